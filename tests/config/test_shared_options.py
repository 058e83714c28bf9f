#!/usr/bin/env python3
"""config.shared_options: an option that several programs take is described the same way by
every one of them (docs/configuration.md: one name, one variable, one range, one help text).

Runs `--help` of every program (and of every epp-admin command), parses each option's block

      --http-port=INT
          HTTP listen port (0: any free port)
          env: HTTP_PORT, default: 8001, range: 0..65535

and, for every flag that appears in two or more of them, requires the same type, help text,
variable, range and secrecy. Defaults must match too, except for the options whose default is a
per-program choice in common/epp_options.h (a service's port, ...). A few flags name different
things in different programs on purpose; they are compared only within the programs that mean
the same by them (SAME_MEANING below, with the reason).

It also checks the start-up every program shares (common/epp_start.c): a bad LOG_LEVEL or
LOG_FORMAT is refused with exit status 2 and a message naming the variable, before the program
does anything (three tools once ignored it and ran at the default level)."""
import os
import re
import subprocess
import sys

PROGRAMS = ["epp-ingest", "epp-consumer", "epp-analytics", "epp-devbroker", "epp-send",
            "epp-load"]

# Options whose default each program chooses (the fragment takes it as a parameter).
PER_PROGRAM_DEFAULT = {
    "http-port",             # each service its own port
    "http-threads",          # analytics' threads are its database connections
    "otel-service-name",     # each service its own name
    "log-level",             # the tools are quieter (warn) than the services (info)
    "pg-connect-timeout-s",  # analytics answers /ready sooner than the consumer retries
    "users", "user-prefix",  # epp-send: a few demo users; epp-load: many load- users
    "format",                # epp-admin restore reads the format from the file by default
    "shutdown-timeout-ms",   # ingest's clients are waiting; the consumer may retry longer
}

# Flags that mean different things in different programs: compared only within each group.
SAME_MEANING = {
    # Each service has its own key list and variable (INGEST_API_KEYS, ANALYTICS_API_KEYS).
    "api-keys": [["epp-ingest"], ["epp-analytics"]],
    # The clients wait for HTTP answers; epp-admin's dlq commands wait for Kafka.
    "timeout": [["epp-send", "epp-load"], ["epp-admin dlq list", "epp-admin dlq replay"]],
    # The clients put the marker or prefix into events; epp-admin selects rows by it.
    "test-marker": [["epp-send", "epp-load"],
                    ["epp-admin backup", "epp-admin delete-test"]],
    "user-prefix": [["epp-send", "epp-load"],
                    ["epp-admin backup", "epp-admin delete-test"]],
}

FLAG = re.compile(r"^  --([a-z0-9-]+)(=[A-Z]+|\[=BOOL\])$")
ENV = re.compile(r"^      env: (.*?), default: (.*?)(, range: ([^,]+))?(, secret)?$")


def parse_help(text):
    """{flag: (type, help, env, default, range, secret)} from a --help text."""
    lines = text.splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = FLAG.match(line)
        if not m or i + 2 >= len(lines):
            continue
        e = ENV.match(lines[i + 2])
        if not e:
            continue
        out[m.group(1)] = {"type": m.group(2), "help": lines[i + 1].strip(), "env": e.group(1),
                           "default": e.group(2), "range": e.group(4) or "",
                           "secret": bool(e.group(5))}
    return out


def run_help(argv):
    r = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(argv)} --help exited {r.returncode}: {r.stderr}")
    return r.stdout


def admin_commands(admin):
    text = run_help([admin])
    part = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    cmds = []
    for line in part.splitlines():
        m = re.match(r"^  (dlq \S+|\S+)\s{2,}", line)
        if m:
            cmds.append(m.group(1))
    return cmds


# Each program with arguments that would make it do something quick and harmless if it ran.
NOWHERE = {"DATABASE_URL": "postgresql://127.0.0.1:9/none?connect_timeout=1",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "HTTP_PORT": "0"}
RUNS = [["epp-ingest"], ["epp-consumer"], ["epp-analytics"], ["epp-devbroker"],
        ["epp-send", "--url", "http://127.0.0.1:9/", "--count", "1", "--retries", "0",
         "--timeout", "0.2"],
        ["epp-load", "--url", "http://127.0.0.1:9/events", "--duration", "100ms"],
        ["epp-admin", "migrate"], ["epp-admin", "dlq", "list", "--timeout", "0.2"]]


def check_bad_log_settings(build, failures):
    for var, value in (("LOG_LEVEL", "loud"), ("LOG_FORMAT", "xml")):
        for argv in RUNS:
            env = dict(os.environ, **NOWHERE, **{var: value})
            try:
                r = subprocess.run([os.path.join(build, "bin", argv[0])] + argv[1:], env=env,
                                   capture_output=True, text=True, timeout=20)
            except subprocess.TimeoutExpired:
                failures.append(f"{' '.join(argv)} with {var}={value} kept running")
                continue
            if r.returncode != 2 or var not in r.stderr:
                failures.append(f"{' '.join(argv)} with {var}={value}: exit {r.returncode}, "
                                f"stderr {r.stderr.strip()[:200]!r} (want 2 and a message "
                                f"naming {var})")


def main():
    build = sys.argv[1]
    binary = lambda name: os.path.join(build, "bin", name)
    helps = {p: parse_help(run_help([binary(p)])) for p in PROGRAMS}
    cmds = admin_commands(binary("epp-admin"))
    if len(cmds) < 6:
        sys.exit(f"FAIL: expected epp-admin's commands in its --help, found {cmds}")
    for c in cmds:
        helps["epp-admin " + c] = parse_help(run_help([binary("epp-admin")] + c.split()))
    for prog, opts in helps.items():
        if len(opts) < 3:
            sys.exit(f"FAIL: could not read {prog}'s options from its --help")

    takers = {}
    for prog, opts in helps.items():
        for flag in opts:
            takers.setdefault(flag, []).append(prog)

    failures = []
    compared = 0
    for flag, progs in sorted(takers.items()):
        if len(progs) < 2:
            continue
        groups = SAME_MEANING.get(flag, [progs])
        ungrouped = [p for p in progs if not any(p in g for g in groups)]
        if ungrouped:
            failures.append(f"--{flag}: {ungrouped} take it but SAME_MEANING does not say what "
                            "it means there")
        for group in groups:
            group = [p for p in group if p in progs]
            fields = ["type", "help", "env", "range", "secret"]
            if flag not in PER_PROGRAM_DEFAULT:
                fields.append("default")
            first = group[0] if group else None
            for other in group[1:]:
                compared += 1
                for f in fields:
                    a, b = helps[first][flag][f], helps[other][flag][f]
                    if a != b:
                        failures.append(f"--{flag} {f}: {first} says {a!r}, {other} says {b!r}")
    # The shared groups must really be shared: these are taken by more than one program.
    for flag in ["http-port", "bind-address", "http-threads", "http-max-connections",
                 "log-level", "log-format", "otel-exporter-otlp-endpoint",
                 "kafka-bootstrap-servers", "kafka-topic", "database-url",
                 "pg-connect-timeout-s", "sql-dir", "kafka-consumer-config"]:
        if len(takers.get(flag, [])) < 2:
            failures.append(f"--{flag} is taken by {takers.get(flag, [])} only")
    # Every program has the logging options.
    for prog, opts in helps.items():
        for flag in ["log-level", "log-format"]:
            if flag not in opts:
                failures.append(f"{prog} has no --{flag}")
    check_bad_log_settings(build, failures)
    for f in failures:
        print("FAIL:", f)
    if failures:
        sys.exit(1)
    print(f"ok: {compared} pairs of programs compared over "
          f"{sum(1 for p in takers.values() if len(p) > 1)} shared options")


if __name__ == "__main__":
    main()
