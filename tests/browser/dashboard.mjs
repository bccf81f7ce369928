// The dashboard in a real browser: Debian's Chromium, headless, driven by puppeteer-core,
// against the real hookrpc binary on an ephemeral port and a real receiver on 127.0.0.1.
//
//   node dashboard.mjs HOOKRPC_BINARY [SCREENSHOT_DIR]
//
// A full key signs in through /ui/#key=…, creates webhooks in the form (the API's 310 shown
// beside the fields first), sends tests, sees a delivery succeed with its attempt, sees others
// fail, retries one from its page and the rest from the filtered list, and sees the chart drawn
// with data. A standard key then gets the read-only portal: no secret, no control that changes
// anything. Each view is saved as a PNG in the screenshot folder, which is printed at the end.
// CHROMIUM names the browser (default /usr/bin/chromium).

import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const [binary, shotsArg] = process.argv.slice(2);
if (!binary) throw new Error("usage: node dashboard.mjs HOOKRPC_BINARY [SCREENSHOT_DIR]");
const work = mkdtempSync(join(tmpdir(), "hookrpc-browser-"));
const shots = shotsArg || join(work, "screenshots");
mkdirSync(shots, { recursive: true });

function check(condition, what) {
  if (!condition) throw new Error(`FAILED: ${what}`);
  console.log(`ok - ${what}`);
}

// ------------------------------------------------------------------------------------------
// A receiver: /ok answers 200, /flaky 500 until healed, then 200.

function startReceiver() {
  const receiver = { healed: false, requests: [] };
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      receiver.requests.push({ path: req.url, body });
      const failing = req.url.startsWith("/flaky") && !receiver.healed;
      res.writeHead(failing ? 500 : 200, { "content-type": "text/plain" });
      res.end(failing ? "not today" : "thanks");
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    receiver.url = (path) => `http://127.0.0.1:${server.address().port}${path}`;
    receiver.close = () => server.close();
    resolve(receiver);
  }));
}

// ------------------------------------------------------------------------------------------
// The server: a fresh database, one retry 100 ms after a failure, private targets allowed.

async function startServer() {
  const db = join(work, "hookrpc.db");
  const log = join(work, "hookrpc.log");
  const child = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--db", db, "--allow-private-targets",
    "--retry-schedule", "100ms", "--attempt-timeout", "2s"], { stdio: ["ignore", "pipe", openSync(log, "w")] });
  const lines = createInterface({ input: child.stdout });
  let key;
  const addr = await new Promise((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`hookrpc exited with ${code}`)));
    lines.on("line", (line) => {
      const k = /^created account default with full-access key: (\S+)/.exec(line);
      if (k) key = k[1];
      const a = /^listening on (\S+)/.exec(line);
      if (a) resolve(a[1]);
    });
  });
  const standardKey = execFileSync(binary, ["key", "add", "--account", "default", "--access", "standard", "--db", db],
    { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
  return { child, base: `http://${addr}`, key, standardKey, log };
}

/// A call straight to the API, as the application that publishes events would make it.
async function rpc(server, method, params) {
  const response = await fetch(`${server.base}/`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: [server.key, ...params] }),
  });
  const reply = await response.json();
  if (reply.error) throw new Error(`${method}: ${JSON.stringify(reply.error)}`);
  return reply.result;
}

// ------------------------------------------------------------------------------------------
// Page helpers

/// Fails the run on any script error or CSP violation in the page.
function watch(page, label) {
  page.on("pageerror", (e) => {
    console.error(`${label}: page error: ${e.message}`);
    process.exitCode = 1;
  });
  page.on("console", (m) => {
    if (m.type() === "error") {
      console.error(`${label}: console error: ${m.text()}`);
      process.exitCode = 1;
    }
  });
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/// Shows the view at `hash` (again, when it is the current one) and waits until it is shown.
async function go(page, hash) {
  await page.evaluate((h) => {
    if (location.hash === h) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = h;
  }, hash);
  await page.waitForFunction((h) => {
    const main = document.getElementById("main");
    return main.dataset.hash === h && main.getAttribute("aria-busy") === "false";
  }, {}, hash);
}

const waitText = (page, selector, text, timeout = 15000) => page.waitForFunction(
  (s, t) => [...document.querySelectorAll(s)].some((e) => e.textContent.includes(t)),
  { timeout }, selector, text);

const mainText = (page) => page.$eval("main", (m) => m.innerText);

async function clickText(page, selector, text) {
  const clicked = await page.$$eval(selector, (nodes, t) => {
    const node = nodes.find((n) => n.textContent.trim() === t);
    if (node) node.click();
    return Boolean(node);
  }, text);
  if (!clicked) throw new Error(`no ${selector} reading "${text}"`);
}

/// Confirms the app's dialog.
async function confirmDialog(page) {
  await page.waitForSelector("#dialog[open]");
  await page.click("#dialog-ok");
  await page.waitForFunction(() => !document.querySelector("#dialog[open]"));
}

/// Opens a delivery's page until it shows `status` (the engine works meanwhile).
async function deliveryReaches(page, id, status) {
  for (let i = 0; i < 100; i++) {
    await go(page, `#/deliveries/${id}?n=${i}`);
    await page.waitForSelector("main h1 .badge");
    if (await page.$eval("main h1 .badge", (b) => b.textContent) === status) return;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`delivery ${id} never became ${status}`);
}

async function fillWebhookForm(page, values) {
  for (const [name, value] of Object.entries(values)) {
    const selector = `form.webhook-form [name="${name}"]`;
    if (await page.$eval(selector, (e) => e.tagName) === "SELECT") await page.select(selector, value);
    else {
      await page.$eval(selector, (e) => { e.value = ""; });
      await page.type(selector, value);
    }
  }
}

/// Creates a webhook through the form; returns its id and the secret the dialog showed.
async function createWebhook(page, values) {
  await go(page, "#/webhooks/new");
  await fillWebhookForm(page, values);
  await page.click("form.webhook-form button.primary");
  await page.waitForSelector("#dialog[open] .secret-value");
  const secret = await page.$eval(".secret-value", (e) => e.textContent);
  await page.click("#dialog-ok");
  await waitText(page, "main h1", values.name);
  const id = Number(/#\/webhooks\/(\d+)/.exec(await page.evaluate(() => location.hash))[1]);
  return { id, secret };
}

/// Presses "Send test" on a webhook's page; returns the delivery id the notice names.
async function sendTest(page, webhookId) {
  await go(page, `#/webhooks/${webhookId}`);
  await page.click("button.test");
  await waitText(page, "#notice", "Test sent as delivery");
  return Number(/#(\d+)/.exec(await page.$eval("#notice", (n) => n.textContent))[1]);
}

// ------------------------------------------------------------------------------------------

async function fullKeySession(browser, server, receiver) {
  const page = await browser.newPage();
  watch(page, "full key");
  const urls = [];
  page.on("request", (r) => urls.push(r.url()));
  await page.setViewport({ width: 1280, height: 900 });

  await page.goto(`${server.base}/ui/#key=${server.key}`);
  await waitText(page, "#access", "full access");
  check(!(await page.evaluate(() => location.href)).includes(server.key), "the key leaves the address bar after sign-in");
  check(await page.evaluate(() => sessionStorage.getItem("hookrpc.key")) !== null, "the key is kept in session storage");
  await waitText(page, "main h1", "Overview");
  await page.waitForSelector("svg.plot");
  await shot(page, "01-overview");

  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement.textContent) === "Skip to content",
    "the first Tab stop is the skip link");

  // The API's 310 messages beside the fields they name.
  await go(page, "#/webhooks/new");
  await fillWebhookForm(page, { url: "ftp://nowhere", batch_size: "0", name: "Orders" });
  await page.click("form.webhook-form button.primary");
  await waitText(page, '[data-field="url"] .field-error', "must be an absolute http or https URL");
  await waitText(page, '[data-field="batch_size"] .field-error', "must be an integer from 1 to 1000");
  check(await page.$eval('[name="url"]', (e) => e.getAttribute("aria-invalid")) === "true", "the bad field is marked invalid");
  await shot(page, "02-webhook-form-310");

  const ok = await createWebhook(page, { url: receiver.url("/ok"), name: "Orders", object: "contact", event: "subscribed" });
  check(ok.secret.startsWith("whsec_"), "the new webhook's secret is shown once, on creation");
  check(!(await mainText(page)).includes(ok.secret), "the webhook's page does not show its secret");
  await shot(page, "03-webhook");

  // A test delivery succeeds, with its attempt.
  const pinged = await sendTest(page, ok.id);
  await deliveryReaches(page, pinged, "succeeded");
  await waitText(page, "main table", "thanks");
  check((await mainText(page)).includes("200"), "the attempt shows HTTP 200 and the response body");
  await shot(page, "04-delivery-succeeded");

  // Two deliveries fail (500, then the one retry); one is retried from its page, the other
  // from the filtered list.
  const flaky = await createWebhook(page, { url: receiver.url("/flaky"), name: "Flaky", object: "contact", event: "created" });
  const first = await sendTest(page, flaky.id);
  const second = await sendTest(page, flaky.id);
  await deliveryReaches(page, second, "failed");
  await deliveryReaches(page, first, "failed");
  await waitText(page, "main table", "not today");
  check((await mainText(page)).includes("HTTP 500"), "the failed attempts say HTTP 500");
  await shot(page, "05-delivery-failed");
  receiver.healed = true;
  await page.click("button.retry");
  await waitText(page, "#notice", "Queued again");
  await deliveryReaches(page, first, "succeeded");

  await go(page, `#/deliveries?status=failed&webhook=${flaky.id}`);
  await waitText(page, "main .count", "1 delivery");
  await shot(page, "06-deliveries-failed-filter");
  await page.click("button.retry-all");
  await confirmDialog(page);
  await waitText(page, "#notice", "1 delivery queued again");
  await deliveryReaches(page, second, "succeeded");

  // The deliveries list, filtered by webhook and status.
  await go(page, "#/deliveries");
  await page.select('select[name="webhook"]', String(flaky.id));
  await page.select('select[name="status"]', "succeeded");
  await page.click("form.filters button.primary");
  await waitText(page, "main .count", "2 deliveries");
  await shot(page, "07-deliveries");

  // The webhook's chart, drawn with data: the failures and the successes.
  await go(page, `#/webhooks/${flaky.id}`);
  await page.waitForSelector("svg.plot rect.bar.succeeded");
  const bars = await page.$$eval("svg.plot rect.bar", (r) => r.map((e) => e.getAttribute("class")));
  check(bars.some((c) => c.includes("failed")) && bars.some((c) => c.includes("retried")),
    "the chart shows retried and failed deliveries");
  check(await page.$$eval("svg.plot .latency", (l) => l.length) > 0, "the chart shows latency");
  await page.select(".chart select", "0");
  await page.waitForSelector('.chart-body[data-interval="60"] svg.plot rect.bar.failed');
  check(true, "the chart redraws by the minute when the last hour is picked");
  await shot(page, "08-webhook-health-chart");

  // An event with data, and its deliveries.
  const eventId = await rpc(server, "addEvent", [{ object: "contact", event: "subscribed", data: { email: "ada@example.com" } }]);
  await go(page, "#/events");
  await waitText(page, "main table", `#${eventId}`);
  await shot(page, "09-events");
  await go(page, `#/events/${eventId}`);
  await waitText(page, "pre.json", "ada@example.com");
  await waitText(page, "main table", "Orders");
  await shot(page, "10-event");

  // Phone width: nothing wider than the screen.
  await page.setViewport({ width: 390, height: 844 });
  await go(page, "#/webhooks");
  await waitText(page, "main table", "Flaky");
  check(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
    "the webhooks list fits a phone-width screen");
  await shot(page, "11-phone-webhooks");

  // (The fragment of /ui/#key=… is the browser's: it is not part of what is sent.)
  await page.setViewport({ width: 1280, height: 900 });
  await manageWebhook(page, ok);
  await metadataKeptAsWritten(page, server);
  await go(page, `#/webhooks/${flaky.id}`);
  await page.click("button.delete");
  await confirmDialog(page);
  await waitText(page, "#notice", "Deleted Flaky");
  check(!(await mainText(page)).includes("Flaky"), "a deleted webhook leaves the list");

  check(!urls.some((u) => u.split("#")[0].includes(server.key)), "no request ever carried the key in its URL");
  await page.close();
  return { ok, flaky };
}

/// Edit, deactivate and activate, rotate: each through its control on the webhook's page.
async function manageWebhook(page, webhook) {
  await go(page, `#/webhooks/${webhook.id}/edit`);
  await fillWebhookForm(page, { description: "orders from the shop" });
  await page.click("form.webhook-form button.primary");
  await waitText(page, "#notice", "Saved");
  await waitText(page, "main .facts", "orders from the shop");
  await page.click("button.toggle");
  await waitText(page, "#notice", "Deactivated");
  check(await page.$eval("main .lead", (l) => l.textContent.includes("inactive")), "deactivated, and shown so");
  await page.click("button.toggle");
  await waitText(page, "#notice", "Activated");
  await page.click("button.rotate");
  await page.waitForSelector("#dialog[open]");
  await page.click("#dialog-ok"); // the question; the same dialog then shows the secret
  await page.waitForSelector("#dialog[open] .secret-value");
  const rotated = await page.$eval(".secret-value", (e) => e.textContent);
  check(rotated.startsWith("whsec_") && rotated !== webhook.secret, "a rotated secret is shown once, and new");
  await page.click("#dialog-ok");
  check(!(await mainText(page)).includes(rotated), "the page does not show the rotated secret");
}

/// Numbers in metadata that a JS number cannot hold as written are shown as written, and an
/// edit of the metadata sends them back so (the page once rounded them all). The app's own
/// numbers stay numbers, even one past 2^53 (a list id): kept raw, it broke the page.
async function metadataKeptAsWritten(page, server) {
  const written = '{"big":12345678901234567890123,"price":1.50,"note":"old"}';
  const body = `{"jsonrpc":"2.0","id":1,"method":"addWebhook","params":["${server.key}",
    {"object":"list","event":"created","url":"http://127.0.0.1:9/metadata","metadata":${written},
    "list_id":9007199254740993}]}`;
  const post = (text) => fetch(`${server.base}/`, { method: "POST", body: text,
    headers: { "content-type": "application/json" } }).then((r) => r.text());
  const id = JSON.parse(await post(body)).result;
  await go(page, `#/webhooks/${id}`);
  const shown = await mainText(page);
  check(shown.includes("12345678901234567890123") && shown.includes("1.50"), "metadata numbers are shown as written");
  await go(page, `#/webhooks/${id}/edit`);
  await page.$eval('form.webhook-form [name="metadata"]', (e) => { e.value = e.value.replace('"old"', '"new"'); });
  await page.click("form.webhook-form button.primary");
  await waitText(page, "#notice", "Saved");
  const kept = await post(`{"jsonrpc":"2.0","id":1,"method":"getWebhookById","params":["${server.key}",${id}]}`);
  check(kept.includes('"metadata":{"big":12345678901234567890123,"price":1.50,"note":"new"}'),
    "an edit of the metadata keeps its other numbers as written");
}

async function standardKeySession(browser, server, hooks) {
  // One failed delivery, so a retry control would have a reason to show.
  const down = await rpc(server, "addWebhook", [{ object: "list", event: "created", url: "http://127.0.0.1:9/" }]);
  const failing = await rpc(server, "testWebhook", [down]);
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  watch(page, "standard key");
  await page.setViewport({ width: 1280, height: 900 });
  await page.goto(`${server.base}/ui/#key=${server.standardKey}`);
  await waitText(page, "#access", "read-only");
  await deliveryReaches(page, failing, "failed");
  const forbidden = /^(New webhook|Edit|Send test|Activate|Deactivate|Rotate secret|Delete|Retry now|Retry all failed that match)$/;
  const controls = async () => page.$$eval("main button, main a", (nodes) => nodes.map((n) => n.textContent.trim()));
  const views = [["#/webhooks", "12-standard-webhooks"], [`#/webhooks/${hooks.ok.id}`, "13-standard-webhook"],
    [`#/deliveries/${failing}`, "14-standard-failed-delivery"], ["#/deliveries?status=failed", "15-standard-deliveries"],
    ["#/webhooks/new", null]];
  for (const [hash, name] of views) {
    await go(page, hash);
    await page.waitForSelector("main h1");
    await new Promise((r) => setTimeout(r, 300));
    const found = (await controls()).filter((t) => forbidden.test(t));
    check(found.length === 0, `${hash}: no mutation control for a standard key (${found.join(", ") || "none"})`);
    const text = await page.evaluate(() => document.body.innerText);
    check(!text.includes(hooks.ok.secret) && !text.includes("whsec_"), `${hash}: no secret for a standard key`);
    if (name) await shot(page, name);
  }
  check((await mainText(page)).includes("read-only"), "the new-webhook page tells a standard key it is read-only");
  await context.close();
}

async function main() {
  const receiver = await startReceiver();
  const server = await startServer();
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // Root in a container (CI) has no user namespaces for Chromium's sandbox.
    args: process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [],
  });
  try {
    const hooks = await fullKeySession(browser, server, receiver);
    await standardKeySession(browser, server, hooks);
  } catch (e) {
    console.error(`--- the server's log:\n${readFileSync(server.log, "utf8")}`);
    throw e;
  } finally {
    await browser.close();
    server.child.kill();
    receiver.close();
  }
  if (process.exitCode) throw new Error("the page logged errors (above)");
  console.log(`screenshots: ${shots}`);
}

main().catch((e) => {
  console.error(e.stack || e.message || e);
  process.exit(1);
});
