"""The OTLP test receiver itself: a well-formed payload is accepted and recorded, and each kind
of mapping violation is reported (so a passing trace test means something)."""
import copy
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from otlp_receiver import OtlpReceiver, validate_payload  # noqa: E402

GOOD = {"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
    "scopeSpans": [{"scope": {"name": "epp"}, "spans": [{
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
        "parentSpanId": "00f067aa0ba902b8", "name": "GET /x", "kind": 2,
        "startTimeUnixNano": "1764000000000000000", "endTimeUnixNano": "1764000000000001000",
        "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}},
                       {"key": "b", "value": {"boolValue": True}},
                       {"key": "d", "value": {"doubleValue": 1.5}},
                       {"key": "s", "value": {"stringValue": "x"}}],
        "links": [{"traceId": "4bf92f3577b34da6a3ce929d0e0e4737", "spanId": "00f067aa0ba902b9"}],
        "status": {"code": 2, "message": "HTTP 503"}}]}]}]}


def mutated(path, value):
    doc = copy.deepcopy(GOOD)
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    target = {"span": span, "resource": doc["resourceSpans"][0]["resource"]}[path[0]]
    for k in path[1:-1]:
        target = target[k]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


BAD = [
    (("span", "traceId"), "4BF92F3577B34DA6A3CE929D0E0E4736"),
    (("span", "traceId"), "0" * 32),
    (("span", "traceId"), "4bf92f3577b34da6"),
    (("span", "spanId"), "00f067aa0ba902b"),
    (("span", "parentSpanId"), "xyz"),
    (("span", "name"), ""),
    (("span", "kind"), 0),
    (("span", "kind"), 6),
    (("span", "kind"), "SPAN_KIND_SERVER"),
    (("span", "startTimeUnixNano"), 1764000000000000000),
    (("span", "endTimeUnixNano"), "1763999999999999999"),
    (("span", "startTimeUnixNano"), "1764000000000000"),  # microseconds, not nanoseconds
    (("span", "attributes", 0, "value"), {"intValue": 200}),
    (("span", "attributes", 0, "value"), {"intValue": "2x"}),
    (("span", "attributes", 0, "value"), {"stringValue": 1}),
    (("span", "links", 0, "spanId"), "nothex!!nothex!!"),
    (("span", "status", "code"), 3),
    (("resource", "attributes"), []),
]


def main():
    failures = []
    errors = []
    spans = validate_payload(GOOD, errors)
    if errors or len(spans) != 1 or spans[0]["attrs"]["http.response.status_code"] != 200:
        failures.append("good payload: %r %r" % (errors, spans))
    for path, value in BAD:
        errors = []
        spans = validate_payload(mutated(path, value), errors)
        if not errors or spans:
            failures.append("not rejected: %s = %r" % (".".join(map(str, path)), value))
    # Over HTTP: a good payload is answered 200 and recorded, a bad one 400 and reported.
    with OtlpReceiver() as rx:
        for doc, want in ((GOOD, 200), (mutated(("span", "kind"), 9), 400)):
            req = urllib.request.Request(rx.endpoint + "/v1/traces", data=json.dumps(doc).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                status = urllib.request.urlopen(req, timeout=5).status
            except urllib.error.HTTPError as e:
                status = e.code
            if status != want:
                failures.append("HTTP answer %s, want %s" % (status, want))
        if len(rx.snapshot()) != 1 or len(rx.errors) != 1:
            failures.append("receiver recorded %d spans, %d errors" % (len(rx.snapshot()),
                                                                      len(rx.errors)))
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print("ok" if not failures else "%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
