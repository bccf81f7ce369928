// Deliveries: filtered by status, webhook, event and time, each with its attempts; retry one,
// or every failed one the filter matches (full keys).

import { call, session } from "./rpc.js";
import { action, ask, badge, facts, field, filters, h, hrefWith, notify, pager, select, show, table, when }
  from "./dom.js";

const PAGE = 50;
const STATUSES = ["pending", "succeeded", "failed", "cancelled"];

// Deliveries as a table; `names` maps webhook ids to their names where known.
export function deliveryTable(rows, names = {}) {
  return table("Deliveries", [
    ["Delivery", (d) => h("a", { href: `#/deliveries/${d.id}` }, `#${d.id}`)],
    ["Status", (d) => badge(d.status)],
    ["Webhook", (d) => h("a", { href: `#/webhooks/${d.webhook_id}` }, names[d.webhook_id] || `#${d.webhook_id}`)],
    ["Event", (d) => h("a", { href: `#/events/${d.event_id}` }, `#${d.event_id}`)],
    ["Attempts", (d) => d.attempt_count],
    ["Last answer", lastAnswer],
    ["Created", (d) => when(d.creation_time)],
  ], rows, "No deliveries match.");
}

function lastAnswer(d) {
  if (!d.attempt_count) return h("span", { class: "muted" }, "not sent yet");
  return d.last_error || `HTTP ${d.last_status_code}`;
}

// A local date and time (as <input type=datetime-local> writes it) in epoch seconds.
const epoch = (local) => Math.floor(new Date(local).getTime() / 1000);

// The search criteria the filter's query asks for (values go to the API as typed: it says
// what is wrong with them).
function criteriaOf(params) {
  const criteria = [];
  const add = (name, fieldName, operator, value = params.get(name)) => {
    if (params.get(name)) criteria.push([fieldName, operator, value]);
  };
  add("status", "status", "exactly");
  add("webhook", "webhook_id", "exactly");
  add("event", "event_id", "exactly");
  add("since", "creation_time", "greater_than", epoch(params.get("since")) - 1);
  add("until", "creation_time", "less_than", epoch(params.get("until")));
  return criteria;
}

export async function list(params) {
  const criteria = criteriaOf(params);
  const offset = Number(params.get("offset") || 0);
  const [rows, total, webhooks] = await Promise.all([
    call("searchDeliveries", { search_criteria: criteria, limit: PAGE, offset, sort_by: "id", sort_order: "DESC" }),
    call("countDeliveries", { search_criteria: criteria }),
    call("searchWebhooks", { limit: 500, sort_by: "name", sort_order: "ASC" }),
  ]);
  const names = Object.fromEntries(webhooks.map((w) => [w.id, w.name]));
  return [
    h("h1", {}, "Deliveries"),
    filters("/deliveries", "Filter deliveries",
      field("Status", select({ name: "status" }, [["", "any"], ...STATUSES], params.get("status"))),
      field("Webhook", select({ name: "webhook" },
        [["", "any"], ...webhooks.map((w) => [w.id, `${w.name} (#${w.id})`])], params.get("webhook"))),
      field("Event id", h("input", { name: "event", inputmode: "numeric", value: params.get("event") || "" })),
      field("Created after", h("input", { name: "since", type: "datetime-local", value: params.get("since") || "" })),
      field("Created before", h("input", { name: "until", type: "datetime-local", value: params.get("until") || "" }))),
    h("div", { class: "list-head" },
      h("p", { class: "count" }, `${total} ${total === 1 ? "delivery" : "deliveries"}`),
      session.full ? retryMatching(criteria, params) : null),
    deliveryTable(rows, names),
    pager(total, offset, PAGE, (o) => hrefWith("/deliveries", params, { offset: o }))];
}

// retryDeliveries with the filter's criteria: every failed delivery it matches (cancelled
// ones too when the filter names that status), of active webhooks.
function retryMatching(criteria, params) {
  return action("Retry all failed that match", async () => {
    const which = params.get("status") === "cancelled" ? "cancelled" : "failed";
    const sure = await ask("Retry every match?",
      h("p", {}, `Every ${which} delivery this filter matches is queued again now, with a fresh retry schedule. Deliveries of inactive or deleted webhooks are skipped.`),
      "Retry them");
    if (!sure) return;
    const queued = await call("retryDeliveries", { search_criteria: criteria });
    show(await list(params));
    notify(`${queued} ${queued === 1 ? "delivery" : "deliveries"} queued again.`);
  }, { class: "retry-all" });
}

export async function detail(params, id) {
  const d = await call("getDeliveryById", { delivery_id: id });
  // The webhook's name, unless it was deleted since (then its id is all there is).
  const [webhook] = await call("searchWebhooks", { search_criteria: [["id", "exactly", d.webhook_id]] });
  const retryable = d.status === "failed" || d.status === "cancelled";
  return [
    h("p", { class: "crumbs" }, h("a", { href: "#/deliveries" }, "Deliveries")),
    h("h1", {}, `Delivery #${d.id} `, badge(d.status)),
    session.full && retryable ? h("div", { class: "actions" }, action("Retry now", async () => {
      await call("retryDelivery", { delivery_id: id });
      show(await detail(params, id));
      notify("Queued again: it is sent at once.");
    }, { class: "primary retry" })) : null,
    facts([
      ["Webhook", webhook ? h("a", { href: `#/webhooks/${d.webhook_id}` }, webhook.name) : `#${d.webhook_id} (deleted)`],
      ["Event", h("a", { href: `#/events/${d.event_id}` }, `#${d.event_id}`)],
      ["Attempts", d.attempt_count],
      d.next_attempt_time !== null && ["Next attempt", when(d.next_attempt_time)],
      ["Last attempt", when(d.last_attempt_time)],
      ["Last error", d.last_error || "none"],
      ["Created", when(d.creation_time)],
    ]),
    h("section", { class: "card" }, h("h2", {}, "Attempts"), attemptTable(d.attempts))];
}

function attemptTable(attempts) {
  return table("Attempts, oldest first", [
    ["Time", (a) => when(a.time)],
    ["Status", (a) => (a.status_code === null ? h("span", { class: "muted" }, "none") : badge(String(a.status_code), a.error ? "failed" : "succeeded"))],
    ["Duration", (a) => `${a.duration_ms} ms`],
    ["Error", (a) => a.error || h("span", { class: "muted" }, "none")],
    ["Response body", (a) => (a.response_body ? h("pre", { class: "body" }, a.response_body) : h("span", { class: "muted" }, "empty"))],
  ], attempts, "No attempt yet.");
}
