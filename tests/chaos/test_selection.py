#!/usr/bin/env python3
"""The tests `make test` and CI run include every short chaos test and the auth suite, and no
heavy (chaos-full) version -- read from the label filters the Makefile's `test` target and
.ci/run actually pass to ctest, applied with `ctest -N` to this build. (chaos.auth once carried
the label chaos-full, which both filters exclude, so it never ran; issue 19, item 7.)

    test_selection.py REPO BUILD_DIR
"""
import re
import subprocess
import sys

MUST_RUN = ("chaos.ingest", "chaos.kafka", "chaos.consumer", "chaos.postgres", "chaos.mock",
            "chaos.check", "chaos.hostile_http", "chaos.auth")


def label_filters(repo):
    """{where: [ctest args]} for each ctest call of `make test` and of CI."""
    out = {}
    make = open(repo + "/Makefile").read()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", make, re.M)
    if recipe is None:
        sys.exit("no `test` target in the Makefile")
    for i, m in enumerate(re.finditer(r"ctest([^\n]*)", recipe.group(1))):
        out["make test #%d" % i] = m.group(1)
    ci = open(repo + "/.ci/run").read()
    for i, m in enumerate(re.finditer(r"\bctest\b([^\n)]*)", ci)):
        out[".ci/run #%d" % i] = m.group(1)
    return out


def selected(build, args):
    """The test names `ctest -N` lists with the label arguments of args (-L/-LE and values)."""
    words = re.findall(r'"[^"]*"|\S+', args)
    keep = []
    for i, w in enumerate(words):
        if w in ("-L", "-LE") and i + 1 < len(words):
            keep += [w, words[i + 1].strip('"')]
    r = subprocess.run(["ctest", "-N"] + keep, cwd=build, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("ctest -N %s failed: %s" % (keep, r.stderr))
    return set(re.findall(r"Test +#\d+: (\S+)", r.stdout)), keep


def labelled(build, label):
    """The names of the tests that carry label (not the fixtures they require)."""
    import json
    r = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build, capture_output=True,
                       text=True)
    if r.returncode != 0:
        sys.exit("ctest --show-only=json-v1 failed: %s" % r.stderr)
    out = set()
    for test in json.loads(r.stdout)["tests"]:
        for prop in test.get("properties", []):
            if prop["name"] == "LABELS" and label in prop["value"]:
                out.add(test["name"])
    return out


def main():
    repo, build = sys.argv[1], sys.argv[2]
    filters = label_filters(repo)
    failures = []
    if not any(k.startswith("make test") for k in filters) or \
            not any(k.startswith(".ci/run") for k in filters):
        failures.append("no ctest call found in the Makefile's test target or in .ci/run: %s" %
                        sorted(filters))
    heavy_all = labelled(build, "chaos-full")
    if not heavy_all:
        failures.append("no test carries the label chaos-full")
    for where, args in sorted(filters.items()):
        names, keep = selected(build, args)
        missing = [n for n in MUST_RUN if n not in names]
        heavy = sorted(names & heavy_all)
        print("%s: ctest %s selects %d tests; missing %s; heavy %s" %
              (where, " ".join(keep), len(names), missing, heavy))
        if missing:
            failures.append("%s does not run %s" % (where, ", ".join(missing)))
        if heavy:
            failures.append("%s runs the heavy versions %s" % (where, ", ".join(heavy)))
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("selection: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
