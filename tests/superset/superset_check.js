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

// Superset's login page is its React app. Once in CI (superset.query_context, a loaded
// machine) a login filled and submitted right after the page's load event stayed on /login;
// Superset's log showed no error, so the cause is not proven (a form still rendering when it
// was filled is the likely one). So each attempt waits for the rendered field, checks what the
// fields hold before submitting, and waits for the page to leave /login; three attempts, each
// failed one printed, and the last failure says what the page showed.
async function login(page) {
  const leftLogin = (u) => !new URL(u).pathname.startsWith("/login");
  let shown = "";
  for (let attempt = 1; attempt <= 3; attempt++) {
    await page.goto(base + "/login/", { waitUntil: "load" });
    if (leftLogin(page.url())) return; // already logged in
    const name = page.locator("#username, input[name=username]").first();
    const pass = page.locator("#password, input[name=password]").first();
    await name.waitFor({ state: "visible" });
    await name.fill(user);
    await pass.fill(password);
    if ((await name.inputValue()) !== user || (await pass.inputValue()) !== password) continue;
    await pass.press("Enter");
    try {
      await page.waitForURL(leftLogin, { timeout: 30000 });
      return;
    } catch (e) {
      shown = (await page.locator("body").innerText().catch(() => "")).slice(0, 300);
      console.error("login attempt " + attempt + " stayed on " + page.url() + ": " + shown);
    }
  }
  throw new Error("login as " + user + " failed; the page showed: " + shown);
}

// Chart data requests by chart id, recorded when their answers have arrived (one the page
// aborted, superseded by a later one, is not recorded: it never finishes). Reading an answer
// over the browser's protocol (read(): status, rows, errors, first_value) starts at once but
// is awaited only after the load -- the page does not wait for this program to have read it --
// except for a big number, whose value tells when the page shows it.
function recordChartData(page, out) {
  page.on("requestfinished", (req) => {
    if (!req.url().includes("/api/v1/chart/data") || req.method() !== "POST") return;
    let body = null;
    try { body = JSON.parse(req.postData() || "null"); } catch (e) { /* not JSON */ }
    const fd = body && body.form_data;
    const rec = { chart_id: fd ? fd.slice_id : null, viz: fd ? fd.viz_type : null, body,
                  received_ms: Date.now(), status: 0, rows: [], errors: [], first_value: undefined,
                  read_done: false };
    rec.read = async () => {
      let answer = null;
      try {
        const resp = await req.response();
        rec.status = resp ? resp.status() : 0;
        answer = resp ? await resp.json() : null;
      } catch (e) { /* an HTML error page, or the answer is gone */ }
      const results = (answer && answer.result) || [];
      rec.rows = results.map((r) => r.rowcount);
      // A big number's value: the page has drawn it once its last line shows these digits
      // (before that, it can show an earlier render's text for a moment).
      rec.first_value = results.length && results[0].data && results[0].data.length ?
        Object.values(results[0].data[0]).find((v) => typeof v === "number") : undefined;
      rec.errors = results.map((r) => r.error).filter(Boolean).concat(
        answer && answer.message ? [answer.message] : [],
        answer && answer.errors ? answer.errors.map((e) => e.message) : []);
      rec.read_done = true;
    };
    rec.pending = rec.read();
    out.push(rec);
  });
}

// The state of every chart on the dashboard, read from the page. The canvases of the charts in
// `finished` (ids) are not read again: reading a canvas back costs the page's renderer time that
// the charts still drawing would otherwise have. drawn_pixels: 1 when a canvas shows a pixel.
async function chartStates(page, finished = []) {
  return page.evaluate((skip) => Array.from(document.querySelectorAll("[data-test-chart-id]")).map((el) => {
    const text = el.innerText || "";
    const spinner = el.querySelector("[aria-label='Loading'], .loading, img[alt='Loading...']");
    const alert = el.querySelector("[role='alert'], .ant-alert-error, [data-test='error-message']");
    const empty = /No results were returned|No data/i.test(text);
    let drawn = 0;
    const id = parseInt(el.getAttribute("data-test-chart-id"), 10);
    el.querySelectorAll("canvas").forEach((c) => {
      if (drawn || skip.includes(id)) return;
      try {
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) { drawn = 1; break; }
      } catch (e) { /* a webgl canvas */ }
    });
    return {
      id,
      viz: el.getAttribute("data-test-viz-type"),
      name: (el.closest(".dashboard-component-chart-holder") || el).querySelector(
        "[data-test='editable-title'], .header-title, [data-test='slice-header'] span")?.innerText || "",
      spinner: !!spinner, alert: alert ? alert.innerText.trim().slice(0, 500) : null,
      empty, drawn_pixels: drawn, text: text.slice(0, 300),
    };
  }), finished);
}

// Every request the page makes, with its start and end (Date.now()), for a load's waterfall.
function recordNetwork(page, out) {
  const started = new Map();
  page.on("request", (req) => started.set(req, Date.now()));
  const done = (req, failed) => {
    const u = new URL(req.url());
    out.push({ path: u.pathname, method: req.method(), type: req.resourceType(),
               start: started.get(req) || Date.now(), end: Date.now(), failed });
    started.delete(req);
  };
  page.on("requestfinished", (req) => done(req, false));
  page.on("requestfailed", (req) => done(req, true));
}

async function loadDashboard(page, requests, network) {
  const from = requests.length;
  const netFrom = network.length;
  const t0 = Date.now();
  await page.goto(base + "/superset/dashboard/" + SLUG + "/" + (process.env.DASH_URL_QUERY || ""),
                  { waitUntil: "domcontentloaded" });
  const domMs = Date.now() - t0;
  const drawnAt = new Map(); // chart id -> ms of the first poll that found it finished
  let states = [];
  let done = false;
  while (Date.now() - t0 < TIMEOUT) {
    states = await chartStates(page, Array.from(drawnAt.keys()));
    const answered = new Set(requests.slice(from).map((r) => r.chart_id));
    const last = new Map(requests.slice(from).map((r) => [r.chart_id, r]));
    const bigDrawn = (s) => {
      const r = last.get(s.id);
      if (!r || !r.read_done) return false;
      const shown = (s.text.split("\n").pop() || "").replace(/\D/g, "");
      return r.first_value === undefined ? shown !== "" : shown === String(Math.round(r.first_value));
    };
    // A chart once drawn keeps its pixels (its canvas is not read again) but must not spin.
    const finished = (s) => answered.has(s.id) && !s.spinner && (s.alert || s.empty ||
      (s.viz === "big_number_total" ? bigDrawn(s) : drawnAt.has(s.id) || s.drawn_pixels > 0));
    for (const s of states) if (!drawnAt.has(s.id) && finished(s)) drawnAt.set(s.id, Date.now() - t0);
    done = states.length > 0 && states.every(finished);
    if (done) break;
    await page.waitForTimeout(25);
  }
  const ms = Date.now() - t0;
  const mine = requests.slice(from);
  await Promise.all(mine.map((r) => r.pending));
  for (const s of states) {
    s.drawn_ms = drawnAt.has(s.id) ? drawnAt.get(s.id) : null;
    const r = mine.filter((x) => x.chart_id === s.id).pop();
    s.status = r ? r.status : null;
    s.rows = r ? r.rows : null;
    s.errors = r ? r.errors : [];
    s.state = !r || s.spinner || s.drawn_ms === null ? "loading" :
      (s.alert || r.status !== 200 || s.errors.length) ? "error" :
      (s.empty || r.rows.every((n) => n === 0)) ? "empty" : "rendered";
  }
  const net = network.slice(netFrom).filter((r) => r.start >= t0)
    .map((r) => ({ ...r, start: r.start - t0, end: r.end - t0 }));
  return { ms, done, dom_ms: domMs, charts: states, network: net,
           requests: mine.map(({ read, pending, ...r }) => ({ ...r, received_ms: r.received_ms - t0 })) };
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
    const network = [];
    recordChartData(page, requests);
    recordNetwork(page, network);
    const t0 = Date.now();
    await login(page);
    out.login_ms = Date.now() - t0;
    if (mode === "dashboard") {
      const [screenshot, loads] = rest;
      out.loads = [];
      for (let i = 0; i < parseInt(loads || "1", 10); i++) {
        out.loads.push(await loadDashboard(page, requests, network));
      }
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
