#!/usr/bin/env python3
"""analytics.js (@segment/analytics-next from npm) in headless Chromium against a local epp stack.

    test_segment_browser.py BUILD_DIR browser

A test page served here (tests/segment/segment_page.html, with the library's UMD build from the
npm install) loads analytics.js with local settings only -- the write key, apiHost the local
epp-ingest, its CDN this page's origin -- calls page() and tracks a click on its button, which
browser_check.js clicks. Ingest runs with API keys (the write key is one of them) and a CORS
allow-list holding the page's origin, as a site would configure it. Both rows arrive, each with
the browser's context: its user agent and the page's URL; the page loaded nothing from another
origin.
"""
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.parse

import segment_util as u
from segment_util import t
from epp_stack import Stack

KEY = "wk-browser-1"


class PageServer:
    """The test page and the library's files on a free loopback port."""

    def __init__(self, umd_dir):
        page = os.path.join(u.HERE, "segment_page.html")

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server naming
                path = urllib.parse.urlsplit(self.path).path
                if path == "/segment_page.html":
                    f = page
                elif path.startswith("/analytics-next/bundles/") and "/.." not in path:
                    f = os.path.join(umd_dir, path[len("/analytics-next/bundles/"):])
                else:
                    f = None
                if not f or not os.path.isfile(f):
                    self.send_error(404)
                    return
                with open(f, "rb") as fh:
                    body = fh.read()
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if f.endswith(".html")
                                 else "application/javascript")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.origin = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def browser(env):
    umd = os.path.join(u.npm_dir(env), "node_modules", "@segment", "analytics-next", "dist", "umd")
    t.check(os.path.isfile(os.path.join(umd, "index.js")), "analytics-next UMD build in %s" % umd)
    pages = PageServer(umd)
    profile = tempfile.mkdtemp(prefix="epp-chromium-", dir=env["EPP_BUILD_DIR"])
    try:
        with Stack(env, "seg_browser", services=("consumer", "ingest"),
                   service_env={"ingest": {"INGEST_API_KEYS": KEY,
                                           "CORS_ORIGINS": pages.origin}}) as s:
            api_host = "127.0.0.1:%d/v1" % s.procs["ingest"].port
            cfg = urllib.parse.quote('{"writeKey": "%s", "apiHost": "%s"}' % (KEY, api_host))
            page_url = pages.origin + "/segment_page.html"
            p = subprocess.run(["node", os.path.join(u.HERE, "browser_check.js"),
                                page_url + "#" + cfg, profile],
                               capture_output=True, text=True, timeout=120, env=u.node_env(env))
            lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
            t.check(lines, "no result from the browser: rc %s\n%s\n%s" %
                    (p.returncode, p.stdout, p.stderr[-3000:]))
            out = json.loads(lines[-1])
            print("browser: responses %s" % [(r["method"], r["url"].rsplit("/", 2)[-2:], r["status"])
                                             for r in out["responses"]])
            t.check(not out.get("error"), "page: %s" % out.get("error"))
            t.check(not out["foreign"], "requests to other origins: %r" % out["foreign"])
            posts = [r for r in out["responses"] if r["method"] == "POST"]
            t.check(sorted(r["url"].rsplit("/", 1)[1] for r in posts) == ["p", "t"] and
                    all(r["status"] == 200 for r in posts), "ingest answers %r" % posts)
            s.wait_rows(2, timeout=60)
            rows = sorted(u.rows(s).values(), key=lambda r: r[1])
            t.check(len(rows) == 2, "rows %d, expected exactly 2" % len(rows))
            (c_user, c_name, c_meta, _), (p_user, p_name, p_meta, _) = rows
            t.check(c_name == "Clicked Buy" and p_name == "page", "event names %r" % [c_name, p_name])
            # No identify: both rows belong to the browser's anonymousId.
            t.check(c_user == p_user == c_meta["anonymousId"], "user ids %r %r" % (c_user, p_user))
            t.check(p_meta["name"] == "Pricing" and p_meta["category"] == "Docs" and
                    p_meta["properties"]["variant"] == "b", "page call %r" % p_meta)
            t.check(c_meta["properties"]["plan"] == "pro", "click properties %r" % c_meta)
            for name, meta in (("click", c_meta), ("page", p_meta)):
                ctx = meta["context"]
                t.check(ctx["userAgent"] == out["userAgent"], "%s: userAgent %r, the browser's %r" %
                        (name, ctx.get("userAgent"), out["userAgent"]))
                t.check(ctx["page"]["url"].split("#")[0] == page_url and
                        ctx["page"]["title"] == "epp Segment test page",
                        "%s: page context %r" % (name, ctx.get("page")))
                t.check(ctx["library"]["name"] == "analytics.js", "%s: library %r" % (name, ctx["library"]))
            print("browser: page and click stored once each, with userAgent %r and page %s" %
                  (out["userAgent"][:60], page_url))
    finally:
        pages.stop()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    env = t.load_env()
    browser(env)
    print("ok: browser")


if __name__ == "__main__":
    main()
