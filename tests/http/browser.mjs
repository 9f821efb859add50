// browser.mjs — woollyd's chat page in a real browser: Debian's Chromium, headless, driven by
// puppeteer-core. Types a message and counts the DOM updates its reply arrives in; sends a
// long one and presses Stop; saves a screenshot. Prints one JSON line of what it saw, for
// tests/test_http.py to check (the stopped stream's id among it, to look up as cancelled).
// usage: node browser.mjs PAGE_URL SCREENSHOT.png
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import puppeteer from "puppeteer-core";

const [url, screenshot] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "woolly-chromium-"));
const browser = await puppeteer.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  userDataDir: profile,
  // No sandbox (root in CI) and none of Chromium's own traffic: this machine's network is closed.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = {};
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 700 });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => document.getElementById("model").textContent !== "…");
  out.model = await page.$eval("#model", (e) => e.textContent);

  // A short reply: count the updates of the assistant's text as it streams.
  await page.$eval("#temperature", (e) => { e.value = "0"; });
  await page.$eval("#max_tokens", (e) => { e.value = "8"; });
  await page.type("#input", "Tell me a story about a cat.");
  await page.evaluate(() => {
    window.updates = 0;
    new MutationObserver((records) => {
      for (const r of records)
        if (r.target.parentElement && r.target.parentElement.classList.contains("assistant")) window.updates++;
        else if (r.target.classList && r.target.classList.contains("assistant")) window.updates++;
    }).observe(document.getElementById("log"), { subtree: true, childList: true, characterData: true });
  });
  await page.click("#send");
  await page.waitForFunction(() => document.getElementById("stop").disabled === false);
  await page.waitForFunction(() => document.getElementById("send").disabled === false, { timeout: 300000 });
  out.updates = await page.evaluate(() => window.updates);
  out.reply = await page.$eval(".turn.assistant:last-child span", (e) => e.textContent);
  out.stats = await page.$eval("#stats", (e) => e.textContent);

  // A long one, stopped once some of it is in.
  await page.$eval("#max_tokens", (e) => { e.value = "200"; });
  await page.type("#input", "And another one.");
  await page.click("#send");
  await page.waitForFunction(() => {
    const spans = document.querySelectorAll(".turn.assistant span");
    return spans[spans.length - 1].textContent.length > 3;
  }, { timeout: 300000 });
  const stats = await page.$eval("#stats", (e) => e.textContent);
  out.stopped_stream = stats.match(/stream (\S+):/)[1];
  await page.click("#stop");
  await page.waitForFunction(() => document.getElementById("stop").disabled === true);
  out.after_stop = await page.$eval("#stats", (e) => e.textContent);
  await page.screenshot({ path: screenshot });
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
