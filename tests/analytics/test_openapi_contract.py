"""OpenAPI contract: the document served at /openapi.json is the one in the repository, and every
documented operation, called for real, answers with a documented status whose body matches the
documented schema (JSON Schema 2020-12, via python3-jsonschema when installed, else a small
built-in checker of the subset the document uses). Ingestion operations are called
on a real epp-ingest when it is built (with the dev broker); the test fails if an operation of
the document has no call here, so new routes cannot go unchecked."""

import json
import os
import sys
import uuid

import analytics_util as a
from analytics_util import t

try:
    import jsonschema  # Debian: python3-jsonschema
except ImportError:
    jsonschema = None

F, T = "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"
R = {"from_ts": F, "to_ts": T}
failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def mini_validate(doc, schema, value, path="$"):
    """The subset of JSON Schema 2020-12 that openapi.json uses, for machines without
    python3-jsonschema. Returns a list of error messages."""
    if "$ref" in schema:
        node = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return mini_validate(doc, node, value, path)
    errs = []
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
                  "string": lambda v: isinstance(v, str), "null": lambda v: v is None,
                  "boolean": lambda v: isinstance(v, bool),
                  "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
                  "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not any(checks[n](value) for n in names):
            return ["%s: %r is not of type %s" % (path, value, types)]
    if "const" in schema and value != schema["const"]:
        errs.append("%s: %r != const %r" % (path, value, schema["const"]))
    if "enum" in schema and value not in schema["enum"]:
        errs.append("%s: %r not in %r" % (path, value, schema["enum"]))
    if isinstance(value, (int, float)) and "minimum" in schema and value < schema["minimum"]:
        errs.append("%s: %r < minimum" % (path, value))
    if isinstance(value, str) and schema.get("format") == "date-time":
        try:
            a.parse_ts(value)
        except ValueError:
            errs.append("%s: %r is not a date-time" % (path, value))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append("%s: too many items" % path)
        for i, item in enumerate(value):
            errs += mini_validate(doc, schema.get("items", {}), item, "%s[%d]" % (path, i))
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                errs.append("%s: %r is required" % (path, k))
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                errs += mini_validate(doc, props[k], v, path + "." + k)
            elif schema.get("additionalProperties") is False:
                errs.append("%s: additional property %r" % (path, k))
    for sub in schema.get("allOf", []):
        errs += mini_validate(doc, sub, value, path)
    if "oneOf" in schema:
        if sum(1 for sub in schema["oneOf"] if not mini_validate(doc, sub, value, path)) != 1:
            errs.append("%s: not exactly one of oneOf" % path)
    return errs


def validate(doc, schema, value):
    if jsonschema is None:
        return mini_validate(doc, schema, value)
    root = {"components": doc["components"], "allOf": [schema]}
    v = jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [e.message for e in v.iter_errors(value)]


def check_call(doc, op_index, opid, base_url, method, path, params=None, body=None, headers=None,
               want_status=None):
    op, path_pattern = op_index[opid]
    url = base_url + path
    if params:
        url += "?" + a.urllib.parse.urlencode(params)
    st, hdrs, raw = t.http_request(method, url, body=body, headers=headers)
    ctx = "%s %s %s -> %s" % (opid, method, path, st)
    if want_status is not None:
        expect(st == want_status, "%s: want %s (%r)" % (ctx, want_status, raw[:300]))
    resp = op["responses"].get(str(st))
    if resp is None:
        expect(False, "%s: status not documented (documented: %s)" % (ctx, sorted(op["responses"])))
        return st, None
    if "$ref" in resp:
        resp = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    ctype = hdrs.get("content-type", "").split(";")[0].strip()
    content = resp.get("content", {})
    expect(ctype in content, "%s: content type %r not documented (%s)" % (ctx, ctype, list(content)))
    for name in resp.get("headers", {}):
        if st in (429, 503):
            expect(name.lower() in hdrs, "%s: header %s missing" % (ctx, name))
    parsed = None
    if ctype == "application/json" and ctype in content:
        parsed = json.loads(raw)
        errs = validate(doc, content[ctype]["schema"], parsed)
        expect(not errs, "%s: body does not match the schema: %s; body %r" % (ctx, errs[:3], raw[:300]))
    return st, parsed


def main():
    env = t.load_env()
    url = a.setup_db(env, "an_contract")
    rows = [(str(uuid.uuid4()), "u%d" % (i % 5), ["view", "click", "buy"][i % 3],
             json.dumps({"i": i, "big": 12345678901234567890}), a.rfc3339(a.parse_ts(F) + i * 7 * 1000000))
            for i in range(3000)]
    a.copy_events(url, rows)
    a.build_rollups(url)
    svc = a.start_service(env, url, log_name="analytics-contract")
    keyed = a.start_service(env, url, extra_env={"ANALYTICS_API_KEYS": "k-one,k-two"},
                            log_name="analytics-contract-keys")
    ingest = None
    try:
        st, _, doc = a.get(svc, "/openapi.json")
        t.check(st == 200 and isinstance(doc, dict), "GET /openapi.json: %s" % st)
        with open(os.path.join(t.REPO, "analytics_service", "openapi.json")) as f:
            expect(json.load(f) == doc, "served /openapi.json differs from analytics_service/openapi.json")
        if jsonschema is not None:
            jsonschema.Draft202012Validator.check_schema({"components": doc["components"]})
        else:
            print("python3-jsonschema not installed: using the built-in subset checker")

        op_index = {}
        for p, item in doc["paths"].items():
            for m, op in item.items():
                if m in ("get", "post", "put", "delete", "patch"):
                    op_index[op["operationId"]] = (op, p)
        called = set()

        def call(opid, *args, **kw):
            called.add(opid)
            return check_call(doc, op_index, opid, *args, **kw)

        base = svc.url("")
        call("countEvents", base, "GET", "/analytics/events/count", R, want_status=200)
        call("countEvents", base, "GET", "/analytics/events/count", dict(R, event_name="view", user_id="u1"), want_status=200)
        call("countEvents", base, "GET", "/analytics/events/count", {"to_ts": T}, want_status=400)
        call("eventTimeseries", base, "GET", "/analytics/events/timeseries", dict(R, interval="hour"), want_status=200)
        call("eventTimeseries", base, "GET", "/analytics/events/timeseries", dict(R, interval="week"), want_status=400)
        call("topEvents", base, "GET", "/analytics/events/top", dict(R, limit=2), want_status=200)
        call("topEvents", base, "GET", "/analytics/events/top", dict(R, limit=0), want_status=400)
        call("activeUsers", base, "GET", "/analytics/users/active", R, want_status=200)
        call("activeUsers", base, "GET", "/analytics/users/active", {"from_ts": T, "to_ts": F}, want_status=400)
        for interval in ("day", "week", "month"):
            call("activeUsers", base, "GET", "/analytics/users/active", dict(R, interval=interval),
                 want_status=200)
        call("activeUsers", base, "GET", "/analytics/users/active", dict(R, interval="hour"),
             want_status=400)
        _, page = call("userEvents", base, "GET", "/analytics/users/u1/events", {"limit": 2}, want_status=200)
        if page and page.get("next_cursor"):
            call("userEvents", base, "GET", "/analytics/users/u1/events",
                 {"limit": 2, "before": page["next_cursor"]}, want_status=200)
        call("userEvents", base, "GET", "/analytics/users/u1/events", {"limit": 0}, want_status=400)
        call("getEvent", base, "GET", "/analytics/events/" + rows[0][0], want_status=200)
        call("getEvent", base, "GET", "/analytics/events/" + str(uuid.uuid4()), want_status=404)
        call("getEvent", base, "GET", "/analytics/events/nope", want_status=400)
        call("dashboard", base, "GET", "/dashboard", want_status=200)
        call("dashboard", base, "POST", "/dashboard", body=b"", want_status=405)
        for name in op_index["dashboardAsset"][0]["parameters"][0]["schema"]["enum"]:
            call("dashboardAsset", base, "GET", "/dashboard/assets/" + name, want_status=200)
        call("dashboardAsset", base, "GET", "/dashboard/assets/nope.js", want_status=404)
        call("dashboardAsset", base, "GET", "/dashboard/assets/..%2F..%2Fetc%2Fpasswd", want_status=404)
        call("openapi", base, "GET", "/openapi.json", want_status=200)
        call("openapi", base, "POST", "/openapi.json", body=b"", want_status=405)
        call("getHealth", base, "GET", "/health", want_status=200)
        call("getReady", base, "GET", "/ready", want_status=200)
        call("getMetrics", base, "GET", "/metrics", want_status=200)

        # With API keys: 401 without one, 200 with either header form; public routes stay open.
        kb = keyed.url("")
        call("countEvents", kb, "GET", "/analytics/events/count", R, want_status=401)
        call("countEvents", kb, "GET", "/analytics/events/count", R, headers={"X-API-Key": "k-two"}, want_status=200)
        call("countEvents", kb, "GET", "/analytics/events/count", R,
             headers={"Authorization": "Bearer k-one"}, want_status=200)
        call("countEvents", kb, "GET", "/analytics/events/count", R, headers={"X-API-Key": "wrong"}, want_status=401)
        call("dashboard", kb, "GET", "/dashboard", want_status=200)
        call("dashboardAsset", kb, "GET", "/dashboard/assets/dashboard.js", want_status=200)
        call("openapi", kb, "GET", "/openapi.json", want_status=200)
        call("getHealth", kb, "GET", "/health", want_status=200)

        # Ingestion, on a real epp-ingest when it is built and a broker is at hand.
        if os.access(t.bin_path(env, "epp-ingest"), os.X_OK) and env.get("KAFKA_BOOTSTRAP_SERVERS"):
            topic = t.unique_name("contract")
            try:
                t.create_topic(env, topic, partitions=1)
            except Exception as e:  # noqa: BLE001 - auto-creation may do instead
                print("create_topic: %s" % e)
            ingest = t.start_process(env, "epp-ingest", port=t.free_port(),
                                     extra_env={"KAFKA_TOPIC": topic, "LOG_LEVEL": "warn",
                                                "HTTP_BIND_ADDRESS": "127.0.0.1"},
                                     log_name="analytics-contract-ingest")
            ib = ingest.url("")
            ev = {"user_id": "u1", "event_name": "view", "metadata": {"a": 1}}
            call("postEvent", ib, "POST", "/events", body=ev, want_status=202)
            call("postEvent", ib, "POST", "/events", body={"user_id": "u1", "event": "x"}, want_status=400)
            call("postEventBatch", ib, "POST", "/events/batch", body=[ev, {"user_id": ""}], want_status=202)
            call("postEventBatch", ib, "POST", "/events/batch", body=[{"user_id": ""}], want_status=400)
            # The Segment-compatible routes (docs/segment.md).
            seg = {"userId": "u1", "messageId": "contract-1"}
            call("segmentTrack", ib, "POST", "/v1/track", body=dict(seg, event="view"), want_status=200)
            call("segmentTrack", ib, "POST", "/v1/track", body=seg, want_status=400)
            call("segmentTrack", ib, "POST", "/v1/track", body=b'{"userId":"u1","event":"x"}',
                 headers={"Content-Type": "application/xml"}, want_status=415)
            call("segmentIdentify", ib, "POST", "/v1/identify", body=dict(seg, traits={"a": 1}), want_status=200)
            call("segmentPage", ib, "POST", "/v1/page", body=dict(seg, name="Home"), want_status=200)
            call("segmentScreen", ib, "POST", "/v1/screen", body=seg, want_status=200)
            call("segmentGroup", ib, "POST", "/v1/group", body=dict(seg, groupId="g"), want_status=200)
            call("segmentGroup", ib, "POST", "/v1/group", body=seg, want_status=400)
            call("segmentAlias", ib, "POST", "/v1/alias", body=dict(seg, previousId="p"), want_status=200)
            good = dict(seg, type="track", event="view")
            call("segmentBatch", ib, "POST", "/v1/batch", body={"batch": [good]}, want_status=200)
            call("segmentBatch", ib, "POST", "/v1/batch", body={"batch": [good, {"type": "track"}]},
                 want_status=200)
            call("segmentBatch", ib, "POST", "/v1/batch", body={"batch": [{"type": "track"}]}, want_status=400)
            call("segmentBatch", ib, "POST", "/v1/batch", body={"batch": []}, want_status=400)
            call("segmentImport", ib, "POST", "/v1/import", body={"batch": [good]}, want_status=200)
            call("getHealth", ib, "GET", "/health", want_status=200)
            call("getReady", ib, "GET", "/ready")
            call("getMetrics", ib, "GET", "/metrics", want_status=200)
        else:
            print("epp-ingest or the broker is missing: ingestion operations not called")
            called.update({"postEvent", "postEventBatch"} |
                          {o for o in op_index if o.startswith("segment")})
            failures.append("ingestion operations not exercised (epp-ingest not built or no broker)")

        missing = set(op_index) - called
        expect(not missing, "documented operations never called: %s" % sorted(missing))
        t.check(svc.alive() and keyed.alive(), "services alive")
    finally:
        for s in (svc, keyed, ingest):
            if s:
                s.stop()
    t.drop_database(env, url)
    if failures:
        print("%d failures" % len(failures))
        sys.exit(1)
    print("ok: %d operations called, every status and body as documented" % len(op_index))


if __name__ == "__main__":
    main()
