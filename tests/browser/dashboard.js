// Opens verifyd's dashboard in headless Chromium (driven by playwright-core) as an operator
// would, and reports what the page shows, for tests/tests/dashboard.rs to check.
//
//   node tests/browser/dashboard.js URL ADMIN_KEY SCREENSHOT.png [--viewport]
//
// Logs in with HTTP Basic (the key as the password), waits for the figures, prints the line
// `READY <cursor>` (the newest event on the page), then waits for a live event newer than it
// (the test makes one), takes a screenshot (of the whole page; with --viewport, of the first
// 1400 × 1000 pixels, as in the README) and prints one line of JSON: the country
// table, the charts' legends, the tables of fallback and routes, the live events, every request
// the page made, and any console message, page error or content-security-policy violation.
// Chromium: $VERIFYD_TEST_CHROMIUM, else /usr/bin/chromium. Modules: NODE_PATH.
"use strict";

const { chromium } = require("playwright-core");

async function main() {
  const [url, key, screenshot, extent] = process.argv.slice(2);
  if (!url || !key || !screenshot) throw new Error("usage: dashboard.js URL ADMIN_KEY SCREENSHOT.png");
  const origin = new URL(url).origin;
  const browser = await chromium.launch({
    executablePath: process.env.VERIFYD_TEST_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  try {
    const context = await browser.newContext({
      viewport: { width: 1400, height: 1000 },
      httpCredentials: { username: "operator", password: key, origin },
      timezoneId: "UTC",
      locale: "en-GB",
    });
    const page = await context.newPage();
    const requests = [];
    const console_messages = [];
    const page_errors = [];
    page.on("request", (request) => requests.push(request.url()));
    page.on("console", (message) => console_messages.push(`${message.type()}: ${message.text()}`));
    page.on("pageerror", (error) => page_errors.push(error.message));

    const response = await page.goto(url, { waitUntil: "load" });
    const status = response.status();
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 30000 });
    await page.waitForSelector("#live-state.live", { timeout: 30000 });
    await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length > 0, null, { timeout: 30000 });
    const newest = await page.evaluate(() =>
      Math.max(0, ...[...document.querySelectorAll("#events tbody tr")].map((row) => Number(row.dataset.cursor))));
    console.log(`READY ${newest}`);
    await page.waitForFunction(
      (cursor) => [...document.querySelectorAll("#events tbody tr")].some((row) => Number(row.dataset.cursor) > cursor),
      newest,
      { timeout: 30000 },
    );
    // One more round of figures, so that the screenshot shows what the live event changed.
    await page.waitForTimeout(500);

    const report = await page.evaluate(() => {
      const text = (node) => (node ? node.textContent.trim() : null);
      const cells = (row) => [...row.querySelectorAll("td")].map(text);
      return {
        title: document.title,
        countries: [...document.querySelectorAll("#countries tbody tr[data-country]")].map((row) => ({
          country: row.dataset.country,
          conversion_rate: row.dataset.conversion === "" ? null : Number(row.dataset.conversion),
          cells: cells(row),
        })),
        tiles: Object.fromEntries([...document.querySelectorAll("#summary .tile")].map((tile) =>
          [tile.dataset.tile, text(tile.querySelector(".value"))])),
        charts: [...document.querySelectorAll(".chart")].map((chart) => ({
          id: chart.id,
          canvas: chart.querySelectorAll("canvas").length,
          series: [...chart.querySelectorAll(".u-legend .u-series th .u-label")].map(text).slice(1),
        })),
        fallback: [...document.querySelectorAll("#fallback tbody tr[data-country]")].map(cells),
        routes: [...document.querySelectorAll("#routes tbody tr[data-carrier]")].map(cells),
        blocks: [...document.querySelectorAll("#blocks tbody tr")].map(cells),
        events: [...document.querySelectorAll("#events tbody tr")].map((row) => ({
          cursor: Number(row.dataset.cursor),
          event: row.dataset.event,
          cells: cells(row),
        })),
        freshness: text(document.getElementById("freshness")),
      };
    });
    await page.screenshot({ path: screenshot, fullPage: extent !== "--viewport" });
    report.status = status;
    report.requests = requests;
    report.console = console_messages;
    report.page_errors = page_errors;
    console.log(JSON.stringify(report));
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
