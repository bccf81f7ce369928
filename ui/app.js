// The dashboard's entry: signing in (a key typed in, or handed over as /ui/#key=…), the
// header, and the routes of the views. Every view reads and changes things through the public
// JSON-RPC API only, with the signed-in key.

import { key, learnAccess, learnCatalog, RpcError, session } from "./rpc.js";
import { field, h, notify, show, showFlashed } from "./dom.js";
import * as overview from "./overview.js";
import * as webhooks from "./webhooks.js";
import * as webhookForm from "./webhook-form.js";
import * as deliveries from "./deliveries.js";
import * as events from "./events.js";

const ROUTES = [
  [/^\/$/, overview.page],
  [/^\/webhooks$/, webhooks.list],
  [/^\/webhooks\/new$/, webhookForm.create],
  [/^\/webhooks\/(\d+)$/, webhooks.detail],
  [/^\/webhooks\/(\d+)\/edit$/, webhookForm.edit],
  [/^\/deliveries$/, deliveries.list],
  [/^\/deliveries\/(\d+)$/, deliveries.detail],
  [/^\/events$/, events.list],
  [/^\/events\/(\d+)$/, events.detail],
];

// A key handed over in the fragment (`/ui/#key=…`) is taken into session storage and removed
// from the address bar, so it stays out of the history and of anything copied from there.
function takeKeyFromFragment() {
  const match = /^#key=([^&]+)/.exec(location.hash);
  if (!match) return;
  key.set(decodeURIComponent(match[1]));
  history.replaceState(null, "", `${location.pathname}${location.search}#/`);
}

function signInPage(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("session").hidden = true;
  const input = h("input", { name: "key", type: "password", autocomplete: "off", required: true,
    spellcheck: "false" });
  const form = h("form", { class: "card narrow", novalidate: true },
    field("API key", input, "A key from hookrpc key add, or the one the server printed at its first start. It is kept in this tab only."),
    h("div", { class: "actions" }, h("button", { class: "primary" }, "Sign in")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    key.set(input.value.trim());
    start();
  });
  show(h("h1", {}, "Sign in"), message ? h("p", { class: "notice error" }, message) : null, form);
  input.focus();
}

function signOut() {
  key.clear();
  history.replaceState(null, "", `${location.pathname}${location.search}#/`);
  notify("");
  signInPage("Signed out.");
}

async function start() {
  if (!key.get()) return signInPage();
  try {
    await learnAccess();
    await learnCatalog();
  } catch (e) {
    if (e instanceof RpcError && e.code === 300) {
      key.clear();
      return signInPage("This key was refused: it is unknown or revoked.");
    }
    return show(h("h1", {}, "The server did not answer"), h("p", {}, e.describe ? e.describe() : String(e)));
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("session").hidden = false;
  const access = document.getElementById("access");
  access.textContent = session.full ? "full access" : "read-only";
  access.className = `badge ${session.full ? "full" : "standard"}`;
  document.body.classList.toggle("read-only", !session.full);
  route();
}

let routed = 0;

// Shows the view the fragment names. Views fetch, then return their nodes; only the view of
// the latest address is shown, so a slow answer to an earlier click never replaces a later
// page. While it loads <main> is aria-busy; once shown, its data-hash names the address.
async function route() {
  if (!key.get()) return;
  const mine = ++routed;
  const main = document.getElementById("main");
  main.setAttribute("aria-busy", "true");
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  markCurrent(path);
  showFlashed();
  let nodes;
  try {
    nodes = await view(path || "/", new URLSearchParams(query));
  } catch (e) {
    if (e instanceof RpcError && e.code === 300) return signOut();
    nodes = [h("h1", {}, "Something went wrong"), h("p", { class: "notice error" }, e.describe ? e.describe() : String(e))];
  }
  if (mine !== routed) return;
  show(nodes);
  main.dataset.hash = location.hash;
  main.setAttribute("aria-busy", "false");
}

async function view(path, params) {
  for (const [pattern, render] of ROUTES) {
    const match = pattern.exec(path);
    if (match) return render(params, ...match.slice(1).map(Number));
  }
  return [h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Overview"))];
}

function markCurrent(path) {
  const section = `#/${(path || "/").split("/")[1] || ""}`;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

window.addEventListener("hashchange", () => {
  if (/^#key=/.test(location.hash)) {
    takeKeyFromFragment();
    start();
  } else route();
});
document.getElementById("sign-out").addEventListener("click", signOut);
takeKeyFromFragment();
start();
