// Opens tests/segment/segment_page.html in headless Chromium (tests/lib/epp_chromium.js, with
// playwright-core from tests/segment's npm install on NODE_PATH), clicks its button, and prints
// one JSON line for test_segment_browser.py:
//   node browser_check.js PAGE_URL USER_DATA_DIR
// {"userAgent", "pageUrl", "responses": [{"url", "status"}], "foreign": [...], "console_errors"}
"use strict";
const { launch } = require("../lib/epp_chromium");

const [pageUrl, userDataDir] = process.argv.slice(2);

(async () => {
  const out = { responses: [], foreign: [], console_errors: [] };
  const ctx = await launch(userDataDir, { width: 1280, height: 800 });
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    page.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith("http://127.0.0.1:") && !u.startsWith("data:")) out.foreign.push(u);
    });
    page.on("response", (r) => {
      if (r.url().includes("/v1/")) out.responses.push({ url: r.url(), status: r.status(), method: r.request().method() });
    });
    page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
    page.on("pageerror", (e) => out.console_errors.push(String(e)));
    await page.goto(pageUrl, { waitUntil: "load" });
    await page.waitForFunction(() => window.eppReady || window.eppError, null, { timeout: 20000 });
    out.error = await page.evaluate(() => window.eppError || null);
    await page.click("#buy");
    // Both calls answered: the page view and the click (a track).
    await page.waitForFunction(() => true, null, { timeout: 1000 });
    const deadline = Date.now() + 20000;
    const answered = (p) => out.responses.some((r) => r.method === "POST" && r.url.endsWith(p));
    while (!(answered("/v1/p") && answered("/v1/t")) && Date.now() < deadline) {
      await page.waitForTimeout(100);
    }
    out.userAgent = await page.evaluate(() => navigator.userAgent);
    out.pageUrl = await page.evaluate(() => location.href);
  } catch (e) {
    out.error = String(e);
  } finally {
    await ctx.close();
  }
  console.log(JSON.stringify(out));
})();
