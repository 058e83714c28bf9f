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
  and it names only columns that exist in public.events (read from a real Postgres with the
  migrations applied).
"""
import argparse
import os
import re
import subprocess
import sys
import uuid

import yaml

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


def events_columns(env):
    """Columns of public.events after applying the migrations to a fresh database."""
    import psycopg2
    admin = psycopg2.connect(env["EPP_TEST_PG_URL"])
    admin.autocommit = True
    db = "deploy_" + uuid.uuid4().hex[:8]
    admin.cursor().execute(f"CREATE DATABASE {db}")
    try:
        url = env["EPP_TEST_PG_URL"].rsplit("/", 1)[0] + "/" + db
        conn = psycopg2.connect(url)
        conn.autocommit = True
        sqldir = os.path.join(ARGS.repo, "sql")
        for f in sorted(os.listdir(sqldir)):
            if f.endswith(".sql"):
                conn.cursor().execute(open(os.path.join(sqldir, f)).read())
        cur = conn.cursor()
        cur.execute("SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema='public' AND table_name='events'")
        cols = {r[0] for r in cur.fetchall()}
        conn.close()
        return cols
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()


def test_superset(repo, env, compose):
    root = os.path.join(repo, "docker", "superset", "bundle")
    meta = yaml.safe_load(open(os.path.join(root, "metadata.yaml")))
    check(meta.get("type") == "Dashboard" and meta.get("version") == "1.0.0",
          "superset: metadata.yaml declares a v1 Dashboard export")
    dbs = [yaml.safe_load(open(os.path.join(root, "databases", f)))
           for f in os.listdir(os.path.join(root, "databases"))]
    check(len(dbs) == 1, "superset: one database")
    db = dbs[0]
    for key in ("database_name", "sqlalchemy_uri", "uuid", "version"):
        check(key in db, f"superset: database has {key}")
    check(db["sqlalchemy_uri"].startswith("postgresql+psycopg2://") and
          "@postgres:5432/events_db" in db["sqlalchemy_uri"],
          "superset: database points at the compose postgres events_db")

    datasets = []
    for d, _, files in os.walk(os.path.join(root, "datasets")):
        datasets += [yaml.safe_load(open(os.path.join(d, f))) for f in files]
    check(len(datasets) == 1, "superset: one dataset")
    ds = datasets[0]
    check(ds["table_name"] == "events" and ds["schema"] == "public", "superset: dataset on public.events")
    check(ds["database_uuid"] == db["uuid"], "superset: dataset references the database uuid")
    real_cols = events_columns(env) if env.get("EPP_TEST_PG_URL") else None
    check(real_cols is not None and len(real_cols) == 6, f"superset: read public.events columns ({real_cols})")
    ds_cols = {c["column_name"] for c in ds["columns"]}
    if real_cols:
        check(ds_cols <= real_cols, f"superset: dataset columns {ds_cols - real_cols} not in public.events")
    check(ds["main_dttm_col"] in ds_cols, "superset: main_dttm_col is a dataset column")
    metrics = {m["metric_name"] for m in ds["metrics"]}

    charts = {}
    for f in os.listdir(os.path.join(root, "charts")):
        c = yaml.safe_load(open(os.path.join(root, "charts", f)))
        charts[c["uuid"]] = c
        check(c["dataset_uuid"] == ds["uuid"], f"superset: chart {c['slice_name']} uses the dataset")
        p = c["params"]
        check(p["viz_type"] == c["viz_type"], f"superset: chart {c['slice_name']} viz_type consistent")
        check(p.get("x_axis") in ds_cols, f"superset: chart {c['slice_name']} x_axis is a column")
        for m in p.get("metrics", []):
            check(m in metrics, f"superset: chart {c['slice_name']} metric {m} is defined")
        for g in p.get("groupby", []):
            check(g in ds_cols, f"superset: chart {c['slice_name']} groupby {g} is a column")
        for flt in p.get("adhoc_filters", []):
            check(flt["subject"] in ds_cols, f"superset: filter on {flt['subject']} is a column")
        uuid.UUID(c["uuid"])
    names = {c["slice_name"] for c in charts.values()}
    check(any("volume" in n.lower() for n in names), "superset: an event volume chart")
    check(any("top" in n.lower() for n in names), "superset: a top event types chart")

    dashes = [yaml.safe_load(open(os.path.join(root, "dashboards", f)))
              for f in os.listdir(os.path.join(root, "dashboards"))]
    check(len(dashes) == 1, "superset: one dashboard")
    pos = dashes[0]["position"]
    used = {v["meta"]["uuid"] for v in pos.values() if isinstance(v, dict) and v.get("type") == "CHART"}
    check(used == set(charts), "superset: the dashboard places exactly the bundle's charts")
    for key, node in pos.items():
        if isinstance(node, dict):
            for child in node.get("children", []):
                check(child in pos, f"superset: position child {child} of {key} exists")

    init = compose["services"]["superset-init"]
    text = open(os.path.join(repo, "docker", "superset", "init.sh")).read()
    for step in ("superset db upgrade", "superset fab create-admin", "superset init",
                 "superset import-dashboards"):
        check(step in text, f"superset init runs `{step}`")
    check(any("/app/epp" in v for v in init.get("volumes", [])), "superset-init mounts the bundle")


def test_readme(repo):
    """Every shell command in the README's code blocks is one the tests or CI run."""
    covered = {
        "make run": "tests/fixtures (make run smoke test)",
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
    files = subprocess.run(["git", "-C", repo, "ls-files"], capture_output=True,
                           text=True).stdout.split()
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
