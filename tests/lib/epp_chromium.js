// Headless Chromium for the browser tests: playwright-core (pinned in
// tests/analytics/package-lock.json, installed into the build directory by the analytics.npm
// fixture and found through NODE_PATH) driving Debian's /usr/bin/chromium.
"use strict";
const { chromium } = require("playwright-core");

// A persistent context in userDataDir (a fresh directory per run) with the given viewport.
function launch(userDataDir, viewport) {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport,
  });
}

module.exports = { launch };
