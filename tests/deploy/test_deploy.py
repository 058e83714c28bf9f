#!/usr/bin/env python3
"""Checks the deployment files against the code, so that they cannot drift:

- docker/docker-compose.yml passes `docker-compose config`;
- every environment variable the compose file gives an epp service is an option that service's
  --help lists, and its port and healthcheck match the service's HTTP_PORT and /health;
- the Dockerfile's HEALTHCHECKs and EXPOSEd ports match too;
- docker/prometheus.yml passes `promtool check config`, the alert and recording rules `promtool
  check rules`, every job targets a service port of the compose file, and the config that
  scripts/prometheus.sh generates for `make run` is the same file with only the targets changed;
- the OTel Collector config is valid YAML naming only components of the contrib image, with
  pipelines that reference only configured components;
- the Superset bundle has the shape Superset's importer expects, its uuids cross-reference,
  every dataset returns exactly the columns it declares when run on a real Postgres with the
  migrations applied (sql/020's function and view included), every chart names only its
  dataset's columns and metrics and carries a saved query_context; Compose's Superset is the
  image docker/Dockerfile builds from the same lock (tagged with its Superset version) with
  scripts/superset.sh provisioning and serving, given only options that script takes; the lock
  pins every package with == and hashes.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import uuid

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import epp_testlib as testlib  # noqa: E402 (found through the path just added)

EPP_SERVICES = {"epp-ingest": 8001, "epp-consumer": 8003, "epp-analytics": 8002}

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)
    return cond


def load_env(build):
    env = {}
    path = os.path.join(build, "test-env", "env")
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k] = v
    return env


def help_options(binary):
    """The env var names and their defaults as listed by `binary --help`."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    check(out.returncode == 0, f"{binary} --help exits 0 (got {out.returncode})")
    text = out.stdout + out.stderr
    return text, set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", text))


def test_compose(repo, build):
    compose = os.path.join(repo, "docker", "docker-compose.yml")
    r = subprocess.run(["docker-compose", "-f", compose, "config"], capture_output=True, text=True)
    check(r.returncode == 0, f"docker-compose config passes: {r.stderr.strip()}")
    cfg = yaml.safe_load(r.stdout) if r.returncode == 0 else yaml.safe_load(open(compose))
    services = cfg["services"]
    for name, port in EPP_SERVICES.items():
        if not check(name in services, f"compose has service {name}"):
            continue
        svc = services[name]
        binary = os.path.join(build, "bin", name)
        if not check(os.path.exists(binary), f"{binary} is built"):
            continue
        help_text, options = help_options(binary)
        env = svc.get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        for var in env:
            check(var in options, f"{name}: compose sets {var}, which --help does not list")
        check(str(env.get("HTTP_PORT")) == str(port), f"{name}: HTTP_PORT is {port} in compose")
        check(re.search(rf"\b{port}\b", help_text) is not None,
              f"{name}: --help shows the default port {port}")
        ports = [str(p) for p in svc.get("ports", [])]
        published = {p.get("target") if isinstance(p, dict) else int(p.split(":")[-1])
                     for p in svc.get("ports", [])}
        check(port in published, f"{name}: publishes container port {port} (has {ports})")
        hc = " ".join(svc.get("healthcheck", {}).get("test", []))
        check(f"http://127.0.0.1:{port}/health" in hc, f"{name}: healthcheck is GET :{port}/health")

    # The compose stack's Kafka is the version scripts/kafka.sh fetches and the tests run.
    version = subprocess.run(["bash", os.path.join(repo, "scripts", "kafka.sh"), "version"],
                             capture_output=True, text=True).stdout.strip()
    image = services.get("kafka", {}).get("image", "")
    check(image == f"apache/kafka:{version}",
          f"compose kafka image {image!r} is apache/kafka:{version} (scripts/kafka.sh version)")
    check(str(services.get("kafka", {}).get("environment", {}).get(
          "KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() == "false",
          "compose kafka does not create topics automatically")

    dockerfile = open(os.path.join(repo, "docker", "Dockerfile")).read()
    for name, port in EPP_SERVICES.items():
        stage = re.search(rf"FROM runtime AS {name}\n(.*?)(?=\nFROM |\Z)", dockerfile, re.S)
        if not check(stage is not None, f"Dockerfile has a target {name}"):
            continue
        body = stage.group(1)
        check(f"EXPOSE {port}" in body, f"Dockerfile {name} exposes {port}")
        check(f"http://127.0.0.1:{port}/health" in body, f"Dockerfile {name} HEALTHCHECK on /health")
        check(re.search(r"^USER ", dockerfile, re.M) is not None, "Dockerfile runs as non-root")
    check("debian:bookworm AS build" in dockerfile and "debian:bookworm-slim" in dockerfile,
          "Dockerfile builds on bookworm, runs on bookworm-slim")
    return cfg


def test_prometheus(repo, compose):
    d = os.path.join(repo, "docker")
    r = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=d,
                       capture_output=True, text=True)
    check(r.returncode == 0, f"promtool check config: {r.stdout}{r.stderr}")
    prom = yaml.safe_load(open(os.path.join(d, "prometheus.yml")))
    rule_files = [os.path.join(d, f) for f in prom["rule_files"]]
    r = subprocess.run(["promtool", "check", "rules"] + rule_files, capture_output=True, text=True)
    check(r.returncode == 0, f"promtool check rules: {r.stdout}{r.stderr}")
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for name, port in EPP_SERVICES.items():
        if check(name in jobs, f"prometheus scrapes {name}"):
            targets = [t for sc in jobs[name]["static_configs"] for t in sc["targets"]]
            check(f"{name}:{port}" in targets, f"prometheus target {name}:{port}")
    # Each rule file's directory is mounted where prometheus.yml (in /etc/prometheus) looks.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["prometheus"]["volumes"]}
    for f in prom["rule_files"]:
        sub = os.path.dirname(f)
        src = mounts.get("/etc/prometheus/" + sub, "")
        check(os.path.realpath(os.path.join(d, src)) == os.path.realpath(os.path.join(d, sub)),
              f"compose mounts docker/{sub} at /etc/prometheus/{sub} for {f} ({mounts})")
    test_prometheus_local(repo, prom)


def test_prometheus_local(repo, prom):
    """`make run`'s config (scripts/prometheus.sh) is docker/prometheus.yml with only the
    targets replaced, and the jobs without a local target (otel-collector) left out."""
    import tempfile
    local = {name: "127.0.0.1:%d" % (18000 + port % 100) for name, port in EPP_SERVICES.items()}
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["bash", os.path.join(repo, "scripts", "prometheus.sh"), "config", tmp] +
                           ["%s=%s" % kv for kv in local.items()], capture_output=True, text=True)
        check(r.returncode == 0, f"prometheus.sh config: {r.stdout}{r.stderr}")
        gen = yaml.safe_load(open(os.path.join(tmp, "prometheus.yml")))
        r = subprocess.run(["promtool", "check", "config", os.path.join(tmp, "prometheus.yml")],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"promtool check config (generated): {r.stdout}{r.stderr}")
        check(os.path.realpath(os.path.join(tmp, "prometheus")) ==
              os.path.realpath(os.path.join(repo, "docker", "prometheus")),
              "the generated config loads the rules of docker/prometheus/")
    want = dict(prom)
    want["scrape_configs"] = [dict(j, static_configs=[{"targets": [local[j["job_name"]]]}])
                              for j in prom["scrape_configs"] if j["job_name"] in local]
    check(gen == want, f"make run's Prometheus config differs from docker/prometheus.yml in more "
                       f"than the targets:\n{gen}\n{want}")


# Components of otel/opentelemetry-collector-contrib that this config may use.
OTEL_KNOWN = {
    "receivers": {"otlp", "prometheus", "hostmetrics"},
    "processors": {"batch", "memory_limiter", "resource", "attributes"},
    "exporters": {"debug", "prometheus", "otlp", "otlphttp", "logging"},
    "connectors": {"spanmetrics", "servicegraph"},
}


def test_otel(repo):
    cfg = yaml.safe_load(open(os.path.join(repo, "docker", "otel-collector.yaml")))
    for kind, known in OTEL_KNOWN.items():
        for comp in cfg.get(kind, {}) or {}:
            check(comp.split("/")[0] in known, f"otel: {kind[:-1]} {comp} exists in the contrib image")
    otlp = cfg["receivers"]["otlp"]["protocols"]
    check(otlp["grpc"]["endpoint"].endswith(":4317"), "otel: OTLP gRPC on 4317")
    check(otlp["http"]["endpoint"].endswith(":4318"), "otel: OTLP HTTP on 4318")
    defined = {k: set((cfg.get(k) or {}).keys()) for k in OTEL_KNOWN}
    for pname, p in cfg["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for comp in p.get(kind, []):
                ok = comp in defined[kind] or comp in defined["connectors"]
                check(ok, f"otel: pipeline {pname} uses {kind[:-1]} {comp}, which is configured")
    check("debug" in cfg["service"]["pipelines"]["traces"]["exporters"], "otel: traces to debug")


def fresh_schema(env):
    """A fresh database with the migrations applied (a cursor on it), for the bundle checks;
    dropped by the returned close function."""
    import psycopg2
    admin = psycopg2.connect(env["EPP_TEST_PG_URL"])
    admin.autocommit = True
    db = "deploy_" + uuid.uuid4().hex[:8]
    admin.cursor().execute(f"CREATE DATABASE {db}")
    url = env["EPP_TEST_PG_URL"].rsplit("/", 1)[0] + "/" + db
    conn = psycopg2.connect(url)
    conn.autocommit = True
    sqldir = os.path.join(ARGS.repo, "sql")
    for f in sorted(os.listdir(sqldir)):
        if f.endswith(".sql"):
            conn.cursor().execute(open(os.path.join(sqldir, f)).read())

    def close():
        conn.close()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()
    return conn.cursor(), close


def relation_columns(cur, sql):
    """The column names a query (or a relation) returns, read from Postgres."""
    cur.execute(f"SELECT * FROM ({sql}) q LIMIT 0")
    return [d[0] for d in cur.description]


def lock_pins(repo):
    """{package: version} of docker/superset/requirements.lock; checks every entry is pinned
    with == and carries hashes."""
    pins = {}
    text = open(os.path.join(repo, "docker", "superset", "requirements.lock")).read()
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", entry)
        if check(m is not None, f"superset lock: {entry.splitlines()[0]!r} is not pinned with =="):
            pins[m.group(1).lower()] = m.group(2)
            check("--hash=sha256:" in entry, f"superset lock: {m.group(1)} has no hash")
    return pins


def test_superset(repo, env, compose):
    """The Superset bundle imports into what sql/ creates, and Compose runs the same Superset as
    `make superset`: the same lock, the same script, configuration and bundle."""
    root = os.path.join(repo, "docker", "superset", "bundle")
    meta = yaml.safe_load(open(os.path.join(root, "metadata.yaml")))
    check(meta.get("type") == "Dashboard" and meta.get("version") == "1.0.0",
          "superset: metadata.yaml declares a v1 Dashboard export")

    def load(kind):
        out = []
        for d, _, files in os.walk(os.path.join(root, kind)):
            out += [yaml.safe_load(open(os.path.join(d, f))) for f in sorted(files)]
        return out

    dbs = load("databases")
    check(len(dbs) == 1, "superset: one database")
    db = dbs[0]
    for key in ("database_name", "sqlalchemy_uri", "uuid", "version"):
        check(key in db, f"superset: database has {key}")
    check(db["database_name"] == "events_db" and
          db["sqlalchemy_uri"].startswith("postgresql+psycopg2://epp_superset:") and
          "@postgres:5432/events_db" in db["sqlalchemy_uri"] and not db.get("allow_dml"),
          "superset: events_db as the read-only role on the compose postgres, no DML")

    cur, close = (fresh_schema(env) if env.get("EPP_TEST_PG_URL") else (None, None))
    check(cur is not None, "superset: no Postgres to check the datasets against")
    datasets = {}
    try:
        for ds in load("datasets"):
            datasets[ds["uuid"]] = ds
            name = ds["table_name"]
            check(ds["database_uuid"] == db["uuid"], f"superset: dataset {name} uses events_db")
            if ds.get("sql"):
                # The template with no time range: {{ ... }} are NULL, {% ... %} vanish.
                sql = re.sub(r"\{%.*?%\}", "", re.sub(r"\{\{.*?\}\}", "NULL", ds["sql"]))
                sql = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
            else:
                sql = f"SELECT * FROM {ds['schema']}.{name}"
            declared = [c["column_name"] for c in ds["columns"]]
            if cur is not None:
                try:
                    real = relation_columns(cur, sql)
                    check(sorted(real) == sorted(declared),
                          f"superset: dataset {name} declares {declared}, Postgres returns {real}")
                except Exception as e:  # noqa: BLE001 - reported as a failure
                    check(False, f"superset: dataset {name} does not run on sql/: {e}")
            check(ds["main_dttm_col"] in declared, f"superset: {name}: main_dttm_col is a column")
    finally:
        if close:
            close()

    charts = {}
    for c in load("charts"):
        charts[c["uuid"]] = c
        name = c["slice_name"]
        ds = datasets.get(c["dataset_uuid"])
        if not check(ds is not None, f"superset: chart {name} uses a dataset of the bundle"):
            continue
        cols = {x["column_name"] for x in ds["columns"]}
        metrics = {m["metric_name"] for m in ds["metrics"]}
        p = c["params"]
        check(p["viz_type"] == c["viz_type"], f"superset: chart {name} viz_type consistent")
        check(p.get("x_axis") in cols | {None}, f"superset: chart {name} x_axis is a column")
        for m in p.get("metrics", []) + ([p["metric"]] if "metric" in p else []):
            check(m in metrics, f"superset: chart {name} metric {m} is defined")
        for g in p.get("groupby", []):
            check(g in cols, f"superset: chart {name} groupby {g} is a column")
        for flt in p.get("adhoc_filters", []):
            check(flt["subject"] in cols, f"superset: chart {name} filters on a column")
        # What /api/v1/chart/{id}/data and tests/superset/test_chart_data.py run.
        qc = json.loads(c["query_context"]) if c.get("query_context") else None
        check(qc is not None and qc.get("queries") and qc["form_data"]["viz_type"] == c["viz_type"],
              f"superset: chart {name} has a saved query_context for its viz_type")
        uuid.UUID(c["uuid"])
    names = {c["slice_name"] for c in charts.values()}
    check(names == {"Total events", "Events over time", "Top event types", "Active users per day",
                    "Events by type over time"}, f"superset: the five charts ({sorted(names)})")

    dashes = load("dashboards")
    check(len(dashes) == 1, "superset: one dashboard")
    pos = dashes[0]["position"]
    used = {v["meta"]["uuid"] for v in pos.values() if isinstance(v, dict) and v.get("type") == "CHART"}
    check(used == set(charts), "superset: the dashboard places exactly the bundle's charts")
    for key, node in pos.items():
        if isinstance(node, dict):
            for child in node.get("children", []):
                check(child in pos, f"superset: position child {child} of {key} exists")
    filters = dashes[0]["metadata"].get("native_filter_configuration", [])
    check([f["filterType"] for f in filters] == ["filter_time"],
          "superset: the dashboard has one time-range filter")

    # Compose: one image built from docker/Dockerfile's superset stage, tagged with the version
    # the lock pins; superset-init provisions and superset serves with scripts/superset.sh.
    pins = lock_pins(repo)
    version = pins.get("apache-superset", "")
    check(version.startswith("6."), f"superset lock: apache-superset 6.x (got {version!r})")
    check(pins.get("marshmallow", "4").split(".")[0] == "3", "superset lock: marshmallow < 4")
    opts = subprocess.run(["bash", os.path.join(repo, "scripts", "superset.sh"), "--help-markdown"],
                          capture_output=True, text=True).stdout
    options = set(re.findall(r"^\| `([A-Z_]+)`", opts, re.M))
    check("SUPERSET_PORT" in options, "scripts/superset.sh --help-markdown lists its options")
    for name, command in (("superset-init", ["provision"]), ("superset", ["serve"])):
        svc = compose["services"].get(name)
        if not check(svc is not None, f"compose has service {name}"):
            continue
        b = svc.get("build", {})
        check(b.get("target") == "superset" and b.get("dockerfile") == "docker/Dockerfile",
              f"{name}: built from docker/Dockerfile, target superset")
        check(svc.get("image") == f"epp-superset:{version}",
              f"{name}: image epp-superset:{version} (the lock's Superset), not {svc.get('image')}")
        check(svc.get("command") == command, f"{name}: runs `scripts/superset.sh {command[0]}`")
        for var in svc.get("environment", {}):
            check(var in options, f"{name}: compose sets {var}, which scripts/superset.sh does not take")
        check(any("superset-home:/app/superset_home" in str(v) for v in svc.get("volumes", [])),
              f"{name}: SUPERSET_HOME on a volume")
    sup = compose["services"].get("superset", {})
    check("8088" in " ".join(str(p) for p in sup.get("ports", [])), "superset publishes 8088")
    check("http://127.0.0.1:8088/health" in " ".join(sup.get("healthcheck", {}).get("test", [])),
          "superset: healthcheck is GET :8088/health")
    dockerfile = open(os.path.join(repo, "docker", "Dockerfile")).read()
    stage = re.search(r"FROM \S+ AS superset\n(.*?)(?=\nFROM |\Z)", dockerfile, re.S)
    if check(stage is not None, "Dockerfile has a target superset"):
        body = stage.group(1)
        for want in ("COPY scripts/superset.sh", "COPY docker/superset", "scripts/superset.sh install",
                     "USER superset", 'ENTRYPOINT ["bash", "/app/epp/scripts/superset.sh"]'):
            check(want in body, f"Dockerfile superset stage: {want}")


def test_readme(repo):
    """Every shell command in the README's code blocks is one the tests or CI run."""
    covered = {
        "make run": "tests/fixtures (make run smoke test)",
        "make superset": "tests/superset (the superset fixture runs scripts/superset.sh)",
        "make test": ".ci/run",
        "make bench": "bench/run.sh",
        "make fuzz": ".ci/run (scripts/fuzz.sh)",
        "make format": "format-check in .ci/run",
        "make format-check": ".ci/run",
        "build/bin/": "tests/deploy/test_readme.py runs every one of these",
        "docker compose -f docker/docker-compose.yml up --build": "this test (compose config)",
        "docker-compose -f docker/docker-compose.yml config": "this test",
    }
    readme = open(os.path.join(repo, "README.md")).read()
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            cmd = line.split("#")[0].strip().lstrip("$ ").strip()
            if not cmd or "──" in cmd or "│" in cmd or "▶" in cmd:
                continue
            check(any(cmd == c or cmd.startswith(c + " ") or (c.endswith("/") and cmd.startswith(c))
                      for c in covered),
                  f"README command `{cmd}` is run by a test or CI")


def test_service_readmes(repo, build):
    """Each service README carries its configuration table exactly as the code prints it."""
    for name, folder in (("epp-ingest", "ingestion_service"), ("epp-consumer", "event_consumer"),
                         ("epp-analytics", "analytics_service")):
        r = subprocess.run([os.path.join(build, "bin", name), "--help-markdown"],
                           capture_output=True, text=True)
        readme = open(os.path.join(repo, folder, "README.md")).read()
        check(r.returncode == 0 and r.stdout in readme,
              f"{folder}/README.md has {name}'s current configuration table (--help-markdown)")
        for section in ("/health", "/metrics"):
            check(section in readme, f"{folder}/README.md documents {section}")


# The files scripts/gen-config-docs.sh writes from the programs' own option tables.
CONFIG_DOCS = ["docs/configuration.md", "docs/tools.md", "ingestion_service/README.md",
               "event_consumer/README.md", "analytics_service/README.md",
               "tools/epp-devbroker/README.md"]


def test_config_docs(repo, build):
    """docs/configuration.md, docs/tools.md and the READMEs' configuration tables are exactly what
    the programs' own tables produce (scripts/gen-config-docs.sh, run in a copy)."""
    import shutil
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for rel in CONFIG_DOCS:
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            shutil.copy(os.path.join(repo, rel), os.path.join(tmp, rel))
        r = subprocess.run(["bash", os.path.join(repo, "scripts", "gen-config-docs.sh"),
                            os.path.abspath(build)], cwd=tmp, capture_output=True, text=True)
        check(r.returncode == 0, f"gen-config-docs.sh runs: {r.stderr}")
        for rel in CONFIG_DOCS:
            fresh = open(os.path.join(tmp, rel)).read()
            committed = open(os.path.join(repo, rel)).read()
            check(fresh == committed, f"{rel} is stale: run scripts/gen-config-docs.sh build")


def test_references(repo):
    """The repository stands alone: no file cites a document outside it (the product contract
    lives in docs/contract.md), every `docs/contract.md §N` names a section that exists, and every
    relative link in a Markdown file points at a file in the repository."""
    files = testlib.git("ls-files", repo=repo).stdout.split()
    if not check(files, "git ls-files lists no file"):
        return
    contract = open(os.path.join(repo, "docs", "contract.md")).read()
    sections = set(re.findall(r"^## §(\d+) ", contract, re.M))
    outside = re.compile(r"\bSPEC(?: §| sections?\b|\.md|'s)|\bNOTES\.md|\.\./shared/|/work/shared")
    cited = re.compile(r"docs/contract\.md §(\d+)(?: and §(\d+))?")
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    for f in files:
        if (f.endswith(("package-lock.json", ".png", ".zip", ".gz")) or "/corpus/" in f or
                f == "tests/deploy/test_deploy.py"):  # this check names the patterns
            continue
        path = os.path.join(repo, f)
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        for m in outside.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            check(False, f"{f}:{line} cites a document outside the repository: {m.group(0)!r}")
        for m in cited.finditer(text):
            for n in m.groups():
                check(n is None or n in sections, f"{f} cites docs/contract.md §{n}, which is missing")
        if f.endswith(".md"):
            for m in link.finditer(text):
                target = m.group(1)
                if re.match(r"^[a-z]+:", target):
                    continue
                full = os.path.normpath(os.path.join(os.path.dirname(path), target))
                check(full.startswith(os.path.abspath(repo)) and os.path.exists(full),
                      f"{f} links to {target}, which is not in the repository")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--build", required=True)
    ARGS = ap.parse_args()
    env = load_env(ARGS.build)
    compose = test_compose(ARGS.repo, ARGS.build)
    test_prometheus(ARGS.repo, compose)
    test_otel(ARGS.repo)
    test_superset(ARGS.repo, env, compose)
    test_readme(ARGS.repo)
    test_config_docs(ARGS.repo, ARGS.build)
    test_references(ARGS.repo)
    test_service_readmes(ARGS.repo, ARGS.build)
    print(f"{len(failures)} failed" if failures else "deploy: all checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
