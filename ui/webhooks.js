// Webhooks: the list with search, and one webhook's page: its health and chart, its recent
// deliveries, its settings, and (full keys) edit, activate/deactivate, test, rotate, delete.
// The signing secret is shown once, when a webhook is created and when it is rotated, never on
// the page itself (a full key could read it from the API, but a screen is often shared).

import { call, session } from "./rpc.js";
import { action, ask, badge, facts, field, filters, flash, h, hrefWith, json, notify, pager, select, show, table, when }
  from "./dom.js";
import { healthChart } from "./chart.js";
import { deliveryTable } from "./deliveries.js";

const PAGE = 25;
const STATES = { active: ["is_active", "exactly", true], inactive: ["is_active", "exactly", false],
  open: ["circuit_state", "exactly", "open"] };

function criteriaOf(params) {
  const criteria = [];
  if (params.get("q")) criteria.push([params.get("in") || "name", "contains", params.get("q")]);
  if (STATES[params.get("state")]) criteria.push(STATES[params.get("state")]);
  return criteria;
}

export async function list(params) {
  const criteria = criteriaOf(params);
  const offset = Number(params.get("offset") || 0);
  const [rows, total] = await Promise.all([
    call("searchWebhooks", { search_criteria: criteria, limit: PAGE, offset, sort_by: "id", sort_order: "ASC" }),
    call("countWebhooks", { search_criteria: criteria }),
  ]);
  return [
    h("div", { class: "title-row" }, h("h1", {}, "Webhooks"),
      session.full ? h("a", { class: "button primary", href: "#/webhooks/new" }, "New webhook") : null),
    filters("/webhooks", "Search webhooks",
      field("Search", h("input", { name: "q", type: "search", value: params.get("q") || "" })),
      field("In", select({ name: "in" }, [["name", "name"], ["url", "URL"], ["description", "description"]], params.get("in"))),
      field("State", select({ name: "state" },
        [["", "any"], ["active", "active"], ["inactive", "inactive"], ["open", "circuit open"]], params.get("state")))),
    h("p", { class: "count" }, `${total} ${total === 1 ? "webhook" : "webhooks"}`),
    table("Webhooks", [
      ["Name", (w) => h("a", { href: `#/webhooks/${w.id}` }, w.name)],
      ["Event", (w) => `${w.object}.${w.event}`],
      ["URL", (w) => h("span", { class: "url" }, w.url)],
      ["State", state],
      ["Last success", (w) => when(w.last_success_time)],
      ["Last error", (w) => (w.last_error ? w.last_error.message : h("span", { class: "muted" }, "none"))],
    ], rows, criteria.length ? "No webhook matches." : "No webhooks yet."),
    pager(total, offset, PAGE, (o) => hrefWith("/webhooks", params, { offset: o }))];
}

function state(w) {
  return [w.is_active ? badge("active") : badge("inactive"), " ",
    w.circuit_state === "open" ? badge("circuit open", "failed") : null];
}

export async function detail(params, id) {
  const [w, recent] = await Promise.all([
    call("getWebhookById", { webhook_id: id }),
    call("searchDeliveries", { search_criteria: [["webhook_id", "exactly", id]], limit: 10, sort_by: "id", sort_order: "DESC" }),
  ]);
  return [
    h("p", { class: "crumbs" }, h("a", { href: "#/webhooks" }, "Webhooks")),
    h("h1", {}, w.name),
    h("p", { class: "lead" }, h("span", { class: "url" }, w.url), " ", state(w)),
    session.full ? controls(w, async () => show(await detail(params, id))) : null,
    h("section", { class: "card" }, h("h2", {}, "Health"), facts([
      ["Circuit", w.circuit_state === "open" ? badge("open", "failed") : badge("closed", "succeeded")],
      ["Consecutive failures", w.consecutive_failures],
      ["Last success", when(w.last_success_time)],
      ["Last error", w.last_error ? [w.last_error.message, " (", when(w.last_error.time), ")"] : "none"],
    ])),
    healthChart(id, "Deliveries and latency"),
    h("section", { class: "card" }, h("h2", {}, "Recent deliveries"), deliveryTable(recent, { [w.id]: w.name }),
      h("p", {}, h("a", { href: `#/deliveries?webhook=${w.id}` }, "All deliveries of this webhook"))),
    h("section", { class: "card" }, h("h2", {}, "Settings"), settings(w))];
}

function settings(w) {
  return facts([
    ["Object and event", `${w.object}.${w.event}`],
    ["List", w.list_id === 0 ? "all lists" : w.list_id],
    ["Batch size", w.batch_size],
    ["Description", w.description || "none"],
    ["Headers", w.headers.length ? h("ul", { class: "plain" }, w.headers.map((x) => h("li", {}, `${x.name}: ${x.value}`))) : "none"],
    ["Basic auth", w.auth ? `${w.auth.username} (password hidden)` : "none"],
    ["Metadata", json(w.metadata)],
    ["Created", when(w.creation_time)],
    ["Changed", when(w.last_modified_time)],
  ]);
}

// What a full key may do to the webhook; `refresh` shows the page again afterwards.
function controls(w, refresh) {
  const done = async (message) => {
    await refresh();
    notify(message);
  };
  return h("div", { class: "actions controls" },
    h("a", { class: "button", href: `#/webhooks/${w.id}/edit` }, "Edit"),
    action("Send test", async () => {
      const delivery = await call("testWebhook", { webhook_id: w.id });
      await done(`Test sent as delivery #${delivery}.`);
    }, { class: "test" }),
    action(w.is_active ? "Deactivate" : "Activate", async () => {
      await call("editWebhook", { webhook_id: w.id, webhook_details: { is_active: !w.is_active } });
      await done(w.is_active ? "Deactivated: it gets no deliveries." : "Activated.");
    }, { class: "toggle" }),
    action("Rotate secret", () => rotate(w, refresh), { class: "rotate" }),
    action("Delete", () => remove(w), { class: "danger delete" }));
}

async function rotate(w, refresh) {
  const sure = await ask(`Rotate the secret of ${w.name}?`,
    h("p", {}, "The old secret keeps signing beside the new one for 24 hours, so receivers can switch over."),
    "Rotate");
  if (!sure) return;
  const secret = await call("rotateWebhookSecret", { webhook_id: w.id });
  await refresh();
  await showSecretOnce("New signing secret", secret);
}

// A secret, shown once in a dialog, for the user to copy to their receiver.
export function showSecretOnce(title, secret) {
  return ask(title, [h("p", {}, "Copy it to your receiver now; this dialog shows it once."),
    h("p", {}, h("code", { class: "secret-value" }, secret))], null);
}

async function remove(w) {
  const sure = await ask(`Delete ${w.name}?`,
    h("p", {}, "Its pending deliveries are cancelled. This cannot be undone."), "Delete");
  if (!sure) return;
  await call("deleteWebhook", { webhook_id: w.id });
  flash(`Deleted ${w.name}.`);
  location.hash = "#/webhooks";
}
