// Opens a Prometheus graph page (Debian's Prometheus serves the classic UI: one
// #graph_wrapperN per expression, drawn with Rickshaw) in headless Chromium (playwright-core +
// /usr/bin/chromium), waits for every panel to be drawn, saves a full-page screenshot and prints
// one JSON line for test_alerts_live.py: charts drawn, legend entries per panel, errors shown.
//   node prometheus_graph.js URL SCREENSHOT PANELS USER_DATA_DIR
"use strict";
const { launch } = require("../lib/epp_chromium");

const [url, screenshot, panels, userDataDir] = process.argv.slice(2);

(async () => {
  const ctx = await launch(userDataDir, { width: 1280, height: 900 });
  const out = { charts: 0, legend: [], errors: [], console_errors: [] };
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    page.on("pageerror", (e) => out.console_errors.push(String(e)));
    await page.goto(url, { waitUntil: "networkidle" });
    // Each panel queries /api/v1/query_range on its own: wait until all are drawn or failed.
    await page.waitForFunction((n) => {
      let done = 0;
      for (let i = 0; i < n; i++) {
        const w = document.getElementById("graph_wrapper" + i);
        const err = w && w.querySelector(".error");
        if (w && (w.querySelector(".graph_area svg path.path") ||
                  (err && err.offsetParent !== null && err.textContent.trim()))) done++;
      }
      return done === n;
    }, parseInt(panels, 10), { timeout: 30000 });
    // The navigation bar is fixed to the viewport: in a full-page screenshot it would cover a
    // chart halfway down.
    await page.addStyleTag({ content: "nav.fixed-top { position: absolute !important; }" });
    await page.waitForTimeout(500);
    Object.assign(out, await page.evaluate((n) => {
      const r = { charts: 0, legend: [], errors: [] };
      for (let i = 0; i < n; i++) {
        const w = document.getElementById("graph_wrapper" + i);
        if (w.querySelector(".graph_area svg path.path")) r.charts++;
        r.legend.push(w.querySelectorAll(".legend li.line").length);
        const err = w.querySelector(".error");
        if (err && err.offsetParent !== null && err.textContent.trim()) r.errors.push(err.textContent.trim());
      }
      return r;
    }, parseInt(panels, 10)));
    await page.screenshot({ path: screenshot, fullPage: true });
  } finally {
    await ctx.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(String(e));
  process.exit(1);
});
