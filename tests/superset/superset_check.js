// Drives Superset in headless Chromium (tests/lib/epp_chromium.js) and prints one JSON line of
// findings for the Python tests (tests/superset/) and bench/bench_superset.sh to judge.
//
//   node superset_check.js dashboard BASE USER PASSWORD USER_DATA_DIR SCREENSHOT [LOADS]
//       logs in, opens the epp-events dashboard LOADS times (default 1) and, each time, waits
//       until every chart has finished: its /api/v1/chart/data answer arrived and the chart
//       shows a drawing, an error or an empty state, with no spinner left. Reports each chart
//       (state, error text, rows), the load time, the chart data requests (their bodies and
//       answers' row counts), console errors, and saves a screenshot of the last load.
//   node superset_check.js explore BASE USER PASSWORD USER_DATA_DIR CHART_ID...
//       opens each chart in Explore and reports the body of its first /api/v1/chart/data
//       request: the query context Explore builds from the chart's saved params, which is what
//       it saves as the chart's query_context.
//
// DASH_TIMEOUT_MS: how long one load may take before the charts still running are reported as
// "loading" (default 60 s). DASH_URL_QUERY: appended to the dashboard's URL (e.g. a
// ?native_filters=... time range).
"use strict";
const { launch } = require("../lib/epp_chromium");

const [mode, base, user, password, userDataDir, ...rest] = process.argv.slice(2);
const TIMEOUT = parseInt(process.env.DASH_TIMEOUT_MS || "60000", 10);
const SLUG = "epp-events";

async function login(page) {
  await page.goto(base + "/login/", { waitUntil: "load" });
  await page.fill("#username, input[name=username]", user);
  await page.fill("#password, input[name=password]", password);
  await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
  if (page.url().includes("/login")) throw new Error("login as " + user + " failed");
}

// Chart data answers by chart id, recorded from the network.
function recordChartData(page, out) {
  page.on("response", async (resp) => {
    const req = resp.request();
    if (!resp.url().includes("/api/v1/chart/data") || req.method() !== "POST") return;
    let body = null;
    let answer = null;
    try { body = JSON.parse(req.postData() || "null"); } catch (e) { /* not JSON */ }
    try { answer = await resp.json(); } catch (e) { /* an HTML error page */ }
    const id = body && body.form_data ? body.form_data.slice_id : null;
    const results = (answer && answer.result) || [];
    out.push({
      chart_id: id, status: resp.status(), body,
      rows: results.map((r) => r.rowcount),
      errors: results.map((r) => r.error).filter(Boolean).concat(
        answer && answer.message ? [answer.message] : [],
        answer && answer.errors ? answer.errors.map((e) => e.message) : []),
      received_ms: Date.now(),
    });
  });
}

// The state of every chart on the dashboard, read from the page.
async function chartStates(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll("[data-test-chart-id]")).map((el) => {
    const text = el.innerText || "";
    const spinner = el.querySelector("[aria-label='Loading'], .loading, img[alt='Loading...']");
    const alert = el.querySelector("[role='alert'], .ant-alert-error, [data-test='error-message']");
    const empty = /No results were returned|No data/i.test(text);
    let drawn = 0;
    el.querySelectorAll("canvas").forEach((c) => {
      try {
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) drawn++;
      } catch (e) { /* a webgl canvas */ }
    });
    return {
      id: parseInt(el.getAttribute("data-test-chart-id"), 10),
      viz: el.getAttribute("data-test-viz-type"),
      name: (el.closest(".dashboard-component-chart-holder") || el).querySelector(
        "[data-test='editable-title'], .header-title, [data-test='slice-header'] span")?.innerText || "",
      spinner: !!spinner, alert: alert ? alert.innerText.trim().slice(0, 500) : null,
      empty, drawn_pixels: drawn, text: text.slice(0, 300),
    };
  }));
}

async function loadDashboard(page, requests) {
  const from = requests.length;
  const t0 = Date.now();
  await page.goto(base + "/superset/dashboard/" + SLUG + "/" + (process.env.DASH_URL_QUERY || ""),
                  { waitUntil: "domcontentloaded" });
  let states = [];
  let done = false;
  while (Date.now() - t0 < TIMEOUT) {
    states = await chartStates(page);
    const answered = new Set(requests.slice(from).map((r) => r.chart_id));
    done = states.length > 0 && states.every((s) => answered.has(s.id) && !s.spinner &&
      (s.alert || s.empty || s.drawn_pixels > 0 || (s.viz === "big_number_total" && /\d/.test(s.text))));
    if (done) break;
    await page.waitForTimeout(25);
  }
  const ms = Date.now() - t0;
  const mine = requests.slice(from);
  for (const s of states) {
    const r = mine.filter((x) => x.chart_id === s.id).pop();
    s.status = r ? r.status : null;
    s.rows = r ? r.rows : null;
    s.errors = r ? r.errors : [];
    s.state = !r || s.spinner ? "loading" :
      (s.alert || r.status !== 200 || s.errors.length) ? "error" :
      (s.empty || r.rows.every((n) => n === 0)) ? "empty" : "rendered";
  }
  return { ms, done, charts: states, requests: mine.map((r) => ({ ...r, received_ms: r.received_ms - t0 })) };
}

(async () => {
  const out = { mode, console_errors: [] };
  const ctx = await launch(userDataDir, { width: 1400, height: 1400 });
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    // A busy machine can take long to serve Superset's first page: every wait has TIMEOUT.
    page.setDefaultTimeout(TIMEOUT);
    page.setDefaultNavigationTimeout(TIMEOUT);
    page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
    page.on("pageerror", (e) => out.console_errors.push(String(e)));
    const requests = [];
    recordChartData(page, requests);
    const t0 = Date.now();
    await login(page);
    out.login_ms = Date.now() - t0;
    if (mode === "dashboard") {
      const [screenshot, loads] = rest;
      out.loads = [];
      for (let i = 0; i < parseInt(loads || "1", 10); i++) out.loads.push(await loadDashboard(page, requests));
      await page.waitForTimeout(300); // let the last chart finish its animation
      await page.screenshot({ path: screenshot, fullPage: true });
    } else if (mode === "explore") {
      out.query_contexts = {};
      for (const id of rest) {
        const from = requests.length;
        await page.goto(base + "/explore/?slice_id=" + id, { waitUntil: "domcontentloaded" });
        const t1 = Date.now();
        while (Date.now() - t1 < TIMEOUT && !requests.slice(from).some((r) => r.body && r.body.queries)) {
          await page.waitForTimeout(50);
        }
        const r = requests.slice(from).find((x) => x.body && x.body.queries);
        out.query_contexts[id] = r ? r.body : null;
      }
    } else {
      throw new Error("unknown mode " + mode);
    }
  } catch (e) {
    out.error = String(e && e.stack || e);
  } finally {
    await ctx.close();
  }
  console.log(JSON.stringify(out));
})();
