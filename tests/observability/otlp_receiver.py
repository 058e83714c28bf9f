"""A test OTLP/HTTP receiver (JSON encoding): POST /v1/traces on a free loopback port.

Every payload is checked against the OTLP JSON mapping (the protobuf JSON mapping of
opentelemetry/proto/collector/trace/v1): resourceSpans[].resource.attributes has service.name;
scopeSpans[].spans[] have traceId (32 lower-case hex, not all zero), spanId (16 hex, not all
zero), parentSpanId absent/empty or 16 hex, a non-empty name, kind 1..5, start/endTimeUnixNano
as strings of digits with end >= start, attributes [{key, value: {stringValue | intValue (a
string of digits, maybe signed) | doubleValue | boolValue}}], links [{traceId, spanId}], status
{code 0..2, message?}. Valid spans are recorded (with the resource's service.name); every
violation is recorded in .errors (and the request is answered 400), so a test asserts
`not receiver.errors`.

Modes: "ok" answers 200 {} (what a collector answers); "silent" accepts connections and never
answers (a hung collector), for the slow-collector test.

    with OtlpReceiver() as r:
        ... OTEL_EXPORTER_OTLP_ENDPOINT = r.endpoint ...
        r.wait_spans(lambda spans: len(spans) >= 2)

Also runnable alone: `python3 otlp_receiver.py [port]` prints each span (manual checks).
"""
import http.server
import json
import re
import socket
import sys
import threading
import time

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
UINT = re.compile(r"^[0-9]+$")
INT = re.compile(r"^-?[0-9]+$")


def _attr_value(v, where, errors):
    """Validates an AnyValue; returns its Python value."""
    if not isinstance(v, dict) or len(v) != 1:
        errors.append("%s: value must be an object with exactly one field: %r" % (where, v))
        return None
    (kind, val), = v.items()
    if kind == "stringValue":
        if not isinstance(val, str):
            errors.append("%s: stringValue must be a string: %r" % (where, val))
        return val
    if kind == "intValue":
        # int64 in the JSON mapping is a decimal string (a number is also accepted by parsers,
        # but epp always writes strings; insisting keeps 64-bit values exact).
        if not isinstance(val, str) or not INT.match(val):
            errors.append("%s: intValue must be a string of digits: %r" % (where, val))
            return None
        return int(val)
    if kind == "doubleValue":
        if not isinstance(val, (int, float)) or isinstance(val, bool):
            errors.append("%s: doubleValue must be a number: %r" % (where, val))
        return val
    if kind == "boolValue":
        if not isinstance(val, bool):
            errors.append("%s: boolValue must be true/false: %r" % (where, val))
        return val
    errors.append("%s: unsupported value kind %r" % (where, kind))
    return None


def _attributes(attrs, where, errors):
    out = {}
    if attrs is None:
        return out
    if not isinstance(attrs, list):
        errors.append("%s: attributes must be a list" % where)
        return out
    for i, a in enumerate(attrs):
        w = "%s.attributes[%d]" % (where, i)
        if not isinstance(a, dict) or not isinstance(a.get("key"), str) or not a.get("key"):
            errors.append("%s: needs a non-empty string key: %r" % (w, a))
            continue
        if "value" not in a:
            errors.append("%s (%s): no value" % (w, a["key"]))
            continue
        out[a["key"]] = _attr_value(a["value"], "%s (%s)" % (w, a["key"]), errors)
    return out


def _trace_id(v, where, errors):
    if not isinstance(v, str) or not HEX32.match(v) or v == "0" * 32:
        errors.append("%s: traceId must be 32 lower-case hex digits, not all zero: %r" % (where, v))


def _span_id(v, where, errors):
    if not isinstance(v, str) or not HEX16.match(v) or v == "0" * 16:
        errors.append("%s: spanId must be 16 lower-case hex digits, not all zero: %r" % (where, v))


def validate_span(s, where, errors):
    """Checks one span; returns the recorded form (dict) or None."""
    if not isinstance(s, dict):
        errors.append("%s: span must be an object" % where)
        return None
    n0 = len(errors)
    _trace_id(s.get("traceId"), where, errors)
    _span_id(s.get("spanId"), where, errors)
    parent = s.get("parentSpanId")
    if parent not in (None, ""):
        _span_id(parent, where + ".parentSpanId", errors)
    name = s.get("name")
    if not isinstance(name, str) or not name:
        errors.append("%s: name must be a non-empty string" % where)
    kind = s.get("kind")
    if not isinstance(kind, int) or isinstance(kind, bool) or not 1 <= kind <= 5:
        errors.append("%s: kind must be an integer 1..5 (SPAN_KIND_INTERNAL..CONSUMER): %r"
                      % (where, kind))
    t0, t1 = s.get("startTimeUnixNano"), s.get("endTimeUnixNano")
    for key, v in (("startTimeUnixNano", t0), ("endTimeUnixNano", t1)):
        if not isinstance(v, str) or not UINT.match(v):
            errors.append("%s: %s must be a string of digits: %r" % (where, key, v))
    if isinstance(t0, str) and isinstance(t1, str) and UINT.match(t0) and UINT.match(t1):
        if int(t1) < int(t0):
            errors.append("%s: endTimeUnixNano < startTimeUnixNano" % where)
        # Plausibility: nanoseconds since 1970 of a time after 2020 (catches us/ms units).
        if int(t0) < 1577836800 * 10**9:
            errors.append("%s: startTimeUnixNano %s is not a nanosecond time after 2020"
                          % (where, t0))
    attrs = _attributes(s.get("attributes"), where, errors)
    links = s.get("links") or []
    if not isinstance(links, list):
        errors.append("%s: links must be a list" % where)
        links = []
    for i, link in enumerate(links):
        w = "%s.links[%d]" % (where, i)
        if not isinstance(link, dict):
            errors.append("%s: link must be an object" % w)
            continue
        _trace_id(link.get("traceId"), w, errors)
        _span_id(link.get("spanId"), w, errors)
    status = s.get("status")
    code = 0
    message = None
    if status is not None:
        if not isinstance(status, dict):
            errors.append("%s: status must be an object" % where)
        else:
            code = status.get("code", 0)
            if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 2:
                errors.append("%s: status.code must be 0..2: %r" % (where, code))
            message = status.get("message")
            if message is not None and not isinstance(message, str):
                errors.append("%s: status.message must be a string" % where)
    if len(errors) != n0:
        return None
    return {
        "trace_id": s["traceId"], "span_id": s["spanId"], "parent": parent or None,
        "name": name, "kind": kind, "start_ns": int(t0), "end_ns": int(t1), "attrs": attrs,
        "links": [(link["traceId"], link["spanId"]) for link in links],
        "status": code, "status_message": message,
    }


def validate_payload(doc, errors):
    """Checks an ExportTraceServiceRequest; returns the recorded spans."""
    spans = []
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
        errors.append("payload: resourceSpans must be a list")
        return spans
    for ri, rs in enumerate(doc["resourceSpans"]):
        w = "resourceSpans[%d]" % ri
        if not isinstance(rs, dict):
            errors.append(w + ": must be an object")
            continue
        res = rs.get("resource")
        rattrs = _attributes(res.get("attributes") if isinstance(res, dict) else None,
                             w + ".resource", errors)
        service = rattrs.get("service.name")
        if not isinstance(service, str) or not service:
            errors.append(w + ": resource.attributes has no service.name")
            continue
        scopes = rs.get("scopeSpans")
        if not isinstance(scopes, list):
            errors.append(w + ": scopeSpans must be a list")
            continue
        for si, ss in enumerate(scopes):
            ws = "%s.scopeSpans[%d]" % (w, si)
            if not isinstance(ss, dict) or not isinstance(ss.get("spans"), list):
                errors.append(ws + ": spans must be a list")
                continue
            for i, s in enumerate(ss["spans"]):
                rec = validate_span(s, "%s.spans[%d]" % (ws, i), errors)
                if rec is not None:
                    rec["service"] = service
                    spans.append(rec)
    return spans


class OtlpReceiver:
    def __init__(self, mode="ok", host="127.0.0.1", port=0):
        self.mode = mode
        self.lock = threading.Lock()
        self.spans = []
        self.errors = []
        self.requests = 0
        self.connections = 0
        self._held = []  # silent mode: sockets kept open, never answered
        self._stop = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                errors = []
                if self.path != "/v1/traces":
                    errors.append("POST to %s, not /v1/traces" % self.path)
                ctype = self.headers.get("Content-Type", "")
                if not ctype.startswith("application/json"):
                    errors.append("Content-Type %r, not application/json" % ctype)
                try:
                    doc = json.loads(body)
                except ValueError as e:
                    errors.append("body is not JSON: %s" % e)
                    doc = None
                spans = validate_payload(doc, errors) if doc is not None else []
                with receiver.lock:
                    receiver.requests += 1
                    receiver.spans.extend(spans)
                    receiver.errors.extend(errors)
                out = b"{}" if not errors else json.dumps({"errors": errors[:5]}).encode()
                self.send_response(200 if not errors else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        if mode == "ok":
            self.server = http.server.ThreadingHTTPServer((host, port), Handler)
            self.server.daemon_threads = True
            self.port = self.server.server_address[1]
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        elif mode == "silent":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(64)
            self.sock.settimeout(0.2)
            self.port = self.sock.getsockname()[1]
            self.thread = threading.Thread(target=self._silent_loop, daemon=True)
        else:
            raise ValueError("mode must be ok or silent")
        self.endpoint = "http://%s:%d" % (host, self.port)

    def _silent_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self._held.append(c)  # read nothing, answer nothing

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self.mode == "ok":
            self.server.shutdown()
            self.server.server_close()
        else:
            self.sock.close()
            for c in self._held:
                c.close()
        self.thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def snapshot(self):
        with self.lock:
            return list(self.spans)

    def wait_spans(self, pred, timeout=15.0):
        """Waits until pred(spans) is true; returns the spans (or raises AssertionError)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if pred(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError("spans not received in %.0fs; have %d: %s"
                                     % (timeout, len(spans), [s["name"] for s in spans][:20]))
            time.sleep(0.05)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 4318
    r = OtlpReceiver(port=port).start()
    print("listening on %s/v1/traces" % r.endpoint, flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            spans = r.snapshot()
            for s in spans[seen:]:
                print(json.dumps(s), flush=True)
            seen = len(spans)
            with r.lock:
                for e in r.errors:
                    print("INVALID:", e, flush=True)
                r.errors.clear()
    except KeyboardInterrupt:
        r.stop()


if __name__ == "__main__":
    main()
