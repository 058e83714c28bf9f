// Drives the dashboard in headless Chromium (playwright-core + Debian's /usr/bin/chromium) and
// prints one JSON line of findings for test_browser.py to judge.
//   node dashboard_check.js BASE_URL EXPECTED_TOTAL SCREENSHOT USER_DATA_DIR [API_KEY]
// With API_KEY, the service has keys on: the page must ask for one, and work once given it.
"use strict";
const { launch } = require("../lib/epp_chromium");

const [base, expectedTotal, screenshot, userDataDir, apiKey] = process.argv.slice(2);
// DASH_TIMEOUT_MS: how long to wait for the expected total (default 20 s).

function rgbCount(data, rgb, tol) {
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0 && Math.abs(data[i] - rgb[0]) <= tol && Math.abs(data[i + 1] - rgb[1]) <= tol &&
        Math.abs(data[i + 2] - rgb[2]) <= tol) n++;
  }
  return n;
}

(async () => {
  const out = { requests: [], foreign: [], console_errors: [] };
  const ctx = await launch(userDataDir, { width: 1280, height: 1000 });
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    const origin = new URL(base).origin;
    page.on("request", (r) => {
      out.requests.push(r.url());
      if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) out.foreign.push(r.url());
    });
    page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
    page.on("pageerror", (e) => out.console_errors.push(String(e)));
    const loadedAt = Date.now();
    await page.goto(base + "/dashboard", { waitUntil: "load" });
    if (apiKey) {
      await page.waitForSelector("#keyform:not([hidden])", { timeout: 15000 });
      out.asked_for_key = true;
      await page.fill("#key", apiKey);
      await page.click("#keyform button");
    }
    await page.waitForFunction((n) => {
      const el = document.getElementById("total");
      return el && el.getAttribute("data-value") === String(n);
    }, expectedTotal, { timeout: parseInt(process.env.DASH_TIMEOUT_MS || "20000", 10) });
    out.reached_ms = Date.now() - loadedAt;
    // Let uPlot paint both charts.
    await page.waitForFunction(() => window.eppDashboard && window.eppDashboard.topPlot &&
                                     window.eppDashboard.seriesPlot && window.eppDashboard.dauPlot,
                               null, { timeout: 10000 });
    await page.waitForTimeout(300);
    const found = await page.evaluate(() => {
      const d = window.eppDashboard;
      const pix = (sel) => {
        const c = document.querySelector(sel + " canvas");
        if (!c) return null;
        const g = c.getContext("2d");
        return Array.from(g.getImageData(0, 0, c.width, c.height).data);
      };
      return {
        total_text: document.getElementById("total").textContent,
        total: d.total, window_count: d.windowCount, unique_users: d.uniqueUsers,
        series_sum: d.series.points.reduce((s, p) => s + p.count, 0),
        series_points: d.series.points.length,
        series_plot_data: d.seriesPlot.data[1].reduce((s, v) => s + (v || 0), 0),
        top: d.top.items, top_plot_data: d.topPlot.data[1],
        dau_users: d.dau.unique_users, dau_points: d.dau.points.length,
        dau_plot_data: d.dauPlot.data[1],
        line_pixels: pix("#series-chart"), bar_pixels: pix("#top-chart"), dau_pixels: pix("#dau-chart"),
        status: document.getElementById("status").textContent,
      };
    });
    found.line_series_pixels = found.line_pixels ? rgbCount(found.line_pixels, [37, 99, 235], 40) : 0;
    found.bar_pixels_n = found.bar_pixels ? rgbCount(found.bar_pixels, [13, 148, 136], 40) : 0;
    found.dau_pixels_n = found.dau_pixels ? rgbCount(found.dau_pixels, [124, 58, 237], 40) : 0;
    delete found.line_pixels;
    delete found.bar_pixels;
    delete found.dau_pixels;
    Object.assign(out, found);
    // One auto-refresh cycle (5 s default) must happen by itself (checked once, without key).
    if (!apiKey) {
      const before = await page.evaluate(() => window.eppDashboard.refreshes);
      await page.waitForFunction((b) => window.eppDashboard.refreshes > b, before, { timeout: 12000 });
      out.auto_refreshed = true;
    }
    await page.screenshot({ path: screenshot, fullPage: true });
  } catch (e) {
    out.error = String(e);
  } finally {
    await ctx.close();
  }
  console.log(JSON.stringify(out));
})();
