// Events: search, and each event's data and deliveries.

import { call, session } from "./rpc.js";
import { facts, field, filters, h, hrefWith, json, pager, select, show, table, when } from "./dom.js";
import { deliveryTable } from "./deliveries.js";

const PAGE = 50;

function criteriaOf(params) {
  const criteria = [];
  for (const [name, fieldName] of [["object", "object"], ["event", "event"], ["list", "list_id"], ["contact", "contact_id"]]) {
    if (params.get(name)) criteria.push([fieldName, "exactly", params.get(name)]);
  }
  return criteria;
}

export async function list(params) {
  const criteria = criteriaOf(params);
  const offset = Number(params.get("offset") || 0);
  const [rows, total] = await Promise.all([
    call("searchEvents", { search_criteria: criteria, limit: PAGE, offset, sort_by: "id", sort_order: "DESC" }),
    call("countEvents", { search_criteria: criteria }),
  ]);
  const objects = Object.keys(session.catalog);
  const eventNames = [...new Set(["ping", ...Object.values(session.catalog).flat()])].sort();
  return [
    h("h1", {}, "Events"),
    filters("/events", "Filter events",
      field("Object", select({ name: "object" }, [["", "any"], ...objects], params.get("object"))),
      field("Event", select({ name: "event" }, [["", "any"], ...eventNames], params.get("event"))),
      field("List id", h("input", { name: "list", inputmode: "numeric", value: params.get("list") || "" })),
      field("Contact id", h("input", { name: "contact", inputmode: "numeric", value: params.get("contact") || "" }))),
    h("p", { class: "count" }, `${total} ${total === 1 ? "event" : "events"}`),
    table("Events", [
      ["Event", (e) => h("a", { href: `#/events/${e.id}` }, `#${e.id}`)],
      ["Type", (e) => `${e.object}.${e.event}`],
      ["List", (e) => e.list_id],
      ["Contact", (e) => e.contact_id ?? "–"],
      ["Deliveries", (e) => e.delivery_count],
      ["Created", (e) => when(e.creation_time)],
    ], rows, "No events match."),
    pager(total, offset, PAGE, (o) => hrefWith("/events", params, { offset: o }))];
}

export async function detail(params, id) {
  const [e, deliveries] = await Promise.all([
    call("getEventById", { event_id: id }),
    call("searchDeliveries", { search_criteria: [["event_id", "exactly", id]] }),
  ]);
  const ids = [...new Set(deliveries.map((d) => d.webhook_id))];
  const webhooks = ids.length ? await call("searchWebhooks", { search_criteria: [["id", "in", ids]] }) : [];
  return [
    h("p", { class: "crumbs" }, h("a", { href: "#/events" }, "Events")),
    h("h1", {}, `Event #${e.id}: ${e.object}.${e.event}`),
    facts([
      ["List", e.list_id],
      ["Contact", e.contact_id ?? "none"],
      ["Idempotency key", e.idempotency_key ?? "none"],
      ["Created", when(e.creation_time)],
    ]),
    h("section", { class: "card" }, h("h2", {}, "Data"), json(e.data)),
    h("section", { class: "card" }, h("h2", {}, `Deliveries (${e.delivery_count})`), deliveryTable(deliveries, Object.fromEntries(webhooks.map((w) => [w.id, w.name]))))];
}
