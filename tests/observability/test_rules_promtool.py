#!/usr/bin/env python3
"""The alert and recording rules of docker/prometheus/ pass their unit tests
(tests/observability/rules_test.yml, run by `promtool test rules`), and those tests cover every
rule: each alert has a case where it fires -- with its labels and annotations given in full --
and a case where it must stay silent; each recording rule has a value test. A rule added
without tests fails here.

    test_rules_promtool.py          (needs promtool: Debian package prometheus)
"""
import os
import re
import shutil
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
TESTS = os.path.join(HERE, "rules_test.yml")

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def rules_of(test_doc):
    """(alerts, records): {name: rule} of the rule files the test file loads."""
    alerts, records = {}, {}
    for rel in test_doc["rule_files"]:
        with open(os.path.normpath(os.path.join(HERE, rel))) as f:
            for group in yaml.safe_load(f)["groups"]:
                for rule in group["rules"]:
                    if "alert" in rule:
                        alerts[rule["alert"]] = rule
                    else:
                        records[rule["record"]] = rule
    return alerts, records


def main():
    tool = os.environ.get("EPP_PROMTOOL") or shutil.which("promtool")
    if not tool:
        print("promtool not found (Debian package prometheus: scripts/install-deps.sh)",
              file=sys.stderr)
        return 1
    with open(TESTS) as f:
        doc = yaml.safe_load(f)
    alerts, records = rules_of(doc)
    shipped = {os.path.join(REPO, "docker", "prometheus", n) for n in ("alerts.yml", "recording.yml")}
    loaded = {os.path.normpath(os.path.join(HERE, rel)) for rel in doc["rule_files"]}
    expect(loaded == shipped, "rules_test.yml loads exactly the shipped rule files: %s" % loaded)

    fires, silent, values = {}, {}, set()
    for case in doc["tests"]:
        for at in case.get("alert_rule_test", []):
            name = at["alertname"]
            if at.get("exp_alerts"):
                fires.setdefault(name, []).append(case["name"])
                rule = alerts.get(name, {})
                for exp in at["exp_alerts"]:
                    labels = exp.get("exp_labels", {})
                    for k, v in rule.get("labels", {}).items():
                        expect(labels.get(k) == v, "%s (%s): expected label %s=%s" %
                               (name, case["name"], k, v))
                    expect(set(exp.get("exp_annotations", {})) == set(rule.get("annotations", {})),
                           "%s (%s): every annotation is checked" % (name, case["name"]))
            else:
                silent.setdefault(name, []).append(case["name"])
        for et in case.get("promql_expr_test", []):
            values |= set(re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", et["expr"]))

    for name in alerts:
        expect(name in fires, "alert %s has no case where it fires" % name)
        expect(name in silent, "alert %s has no case where it must stay silent" % name)
        print("%-28s fires in %d checks, silent in %d" %
              (name, len(fires.get(name, [])), len(silent.get(name, []))))
    for name in set(fires) | set(silent):
        expect(name in alerts, "rules_test.yml tests %s, which alerts.yml does not define" % name)
    for name in records:
        expect(name in values, "recording rule %s has no value test" % name)
    print("%d alerts, %d recording rules" % (len(alerts), len(records)))

    p = subprocess.run([tool, "test", "rules", TESTS], capture_output=True, text=True, timeout=120)
    out = (p.stdout + p.stderr).strip()
    print(out)
    expect(p.returncode == 0, "promtool test rules %s failed" % TESTS)
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
