// Headless Chromium for the browser tests (tests/analytics/dashboard_check.js,
// tests/superset/superset_check.js): Debian's /usr/bin/chromium driven by playwright-core, which
// the analytics_npm CTest fixture installs (NODE_PATH points at it; tests/lib/epp_browser.py).
"use strict";
const { chromium } = require("playwright-core");

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// A persistent context in userDataDir (a fresh directory per run: no state is shared).
async function launch(userDataDir, viewport) {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ARGS,
    viewport: viewport || { width: 1280, height: 1000 },
  });
}

module.exports = { launch };
