// Drives the official Segment Node.js library (@segment/analytics-node, pinned in
// package-lock.json) against epp-ingest and prints one JSON line for the Python tests to judge.
//   node segment_node.js PLAN.json
// PLAN: {"host": "http://127.0.0.1:PORT", "writeKey": "...", "flushAt": n, "maxRetries": n,
//        "calls": [{"method": "track", "args": {...}}, ...]}
// Output: {"results": [{"method", "messageId", "timestamp", "error"}], "statuses": [HTTP statuses
// of every attempt], "retryAfter": [the Retry-After of each 5xx/429], "requests": n,
// "errors": [...]}. Calls are made in order without waiting,
// so that the library batches them as an application's would.
"use strict";
const fs = require("fs");
const { Analytics } = require("@segment/analytics-node");

(async () => {
  const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const analytics = new Analytics({
    writeKey: plan.writeKey,
    host: plan.host,
    flushAt: plan.flushAt || 15,
    flushInterval: plan.flushInterval || 200,
    maxRetries: plan.maxRetries === undefined ? 10 : plan.maxRetries,
    httpRequestTimeout: plan.httpRequestTimeout || 20000,
  });
  const out = { results: [], statuses: [], retryAfter: [], requests: 0, errors: [] };
  analytics.on("http_request", () => { out.requests++; });
  analytics.on("http_response", (r) => {
    out.statuses.push(r.status);
    if (r.status >= 500 || r.status === 429) out.retryAfter.push((r.headers || {})["retry-after"] || null);
  });
  analytics.on("error", (e) => { out.errors.push(String((e && e.reason) || e)); });
  const pending = plan.calls.map((call, i) => new Promise((resolve) => {
    analytics[call.method](call.args, (err, ctx) => {
      out.results[i] = {
        method: call.method,
        messageId: ctx && ctx.event ? ctx.event.messageId : null,
        timestamp: ctx && ctx.event && ctx.event.timestamp ? new Date(ctx.event.timestamp).toISOString() : null,
        error: err ? String(err.reason || err.message || err) : null,
      };
      resolve();
    });
  }));
  await Promise.all(pending);
  await analytics.closeAndFlush({ timeout: plan.closeTimeout || 120000 });
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.log(JSON.stringify({ fatal: String(e && e.stack ? e.stack : e) }));
  process.exit(1);
});
