// A full hookrpc session through jayson's HTTP client, a JSON-RPC library nobody here wrote:
//   node session.mjs URL KEY [OBJECT EVENT] [1|2|both]
// OBJECT/EVENT (default contact/subscribed) must be an event of the server's catalog, so the same
// session runs against Vision6's catalog and a shop's (orders/place).
//   version 1: jayson's `version: 1` mode, the Vision6 dialect: requests have no `jsonrpc`
//              member, positional params; replies must be exactly {"id","result","error"}.
//   version 2: strict JSON-RPC 2.0, params by name, with batches (one holding a notification).
// Exits non-zero on any mismatch, so CI can run it. TRACE=1 prints every request and reply.
import assert from "node:assert/strict";
import jayson from "jayson/promise/index.js";

const [url, key, object = "contact", event = "subscribed", which = "both"] = process.argv.slice(2);
if (!url || !key) {
  console.error("usage: node session.mjs URL KEY [OBJECT EVENT] [1|2|both]");
  process.exit(64);
}

// Checks every reply's shape for its dialect and remembers what went over the wire.
function makeClient(version) {
  // jayson's HTTP client takes http.request options (plus its own), not a URL and options.
  const { hostname, port, pathname, search } = new URL(url);
  const client = jayson.client.http({ hostname, port, path: pathname + search, version });
  const wire = { sent: [], contentTypes: [] };
  client.on("request", (request) => wire.sent.push(request));
  client.on("http response", (res) => wire.contentTypes.push(res.headers["content-type"]));
  if (process.env.TRACE) {
    client.on("response", (request, reply) => console.log(`  > ${JSON.stringify(request)}\n  < ${JSON.stringify(reply)}`));
  }
  return { client, wire, version };
}

function checkReply(version, request, reply) {
  const where = `${request.method} (id ${JSON.stringify(request.id)})`;
  assert.ok(reply && typeof reply === "object" && !Array.isArray(reply), `${where}: a reply object`);
  assert.deepEqual(reply.id, request.id, `${where}: the id comes back as sent`);
  if (version === 1) {
    assert.ok(!("jsonrpc" in request), `${where}: jayson 1.0 sent a jsonrpc member`);
    assert.deepEqual(Object.keys(reply).sort(), ["error", "id", "result"], `${where}: 1.0 reply members`);
    assert.ok((reply.result === null) !== (reply.error === null), `${where}: exactly one of result/error is null`);
  } else {
    assert.equal(request.jsonrpc, "2.0");
    assert.equal(reply.jsonrpc, "2.0", `${where}: 2.0 reply has jsonrpc "2.0"`);
    assert.ok(("result" in reply) !== ("error" in reply), `${where}: exactly one of result/error`);
  }
  if (reply.error != null) {
    assert.equal(typeof reply.error.code, "number", `${where}: error.code is a number`);
    assert.equal(typeof reply.error.message, "string", `${where}: error.message is a string`);
  }
}

// One call; resolves to the whole (checked) reply.
async function send(c, method, params) {
  const reply = await c.client.request(method, params);
  checkReply(c.version, c.wire.sent.at(-1), reply);
  assert.match(c.wire.contentTypes.at(-1) ?? "", /^application\/json/, `${method}: reply content type`);
  return reply;
}

async function ok(c, method, params) {
  const reply = await send(c, method, params);
  assert.ok(reply.error == null, `${method}: unexpected error ${JSON.stringify(reply.error)}`);
  return reply.result;
}

async function fails(c, method, params, code) {
  const reply = await send(c, method, params);
  assert.ok(reply.error != null, `${method}: expected error ${code}, got result ${JSON.stringify(reply.result)}`);
  assert.equal(reply.error.code, code, `${method}: error code (${JSON.stringify(reply.error)})`);
  return reply.error;
}

// A 2.0 batch built with jayson's own batch API; replies are matched to requests by id.
async function batch(c, calls) {
  const requests = calls.map(([method, params, notify]) =>
    c.client.request(method, params, notify ? null : undefined, false),
  );
  const replies = await c.client.request(requests);
  assert.ok(Array.isArray(replies), "a batch is answered by an array");
  const expected = requests.filter((r) => "id" in r);
  assert.equal(replies.length, expected.length, "one reply per request, none for notifications");
  return expected.map((request) => {
    const reply = replies.find((r) => r.id === request.id);
    assert.ok(reply, `batch: no reply for ${request.method} (id ${request.id})`);
    checkReply(2, request, reply);
    return reply;
  });
}

const unique = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
// Webhook and event on a list of their own, so other clients' webhooks on the server do not match.
const listId = () => 1 + Math.floor(Math.random() * 2_000_000_000);

async function session(version) {
  const c = makeClient(version);
  const tag = `jayson-v${version}-${unique}`;
  const hookUrl = `https://hooks.acme.io/${tag}/${object}.${event}`;
  const criteria = [["url", "contains", tag]];
  const list_id = listId();
  const label = `jayson ${version === 1 ? "1.0 (Vision6 dialect)" : "2.0"} ${object}.${event}`;
  // The Vision6 dialect sends params by position, the 2.0 session by name.
  const p = (named) => (version === 1 ? Object.values(named) : named);

  const id = await ok(c, "addWebhook", p({ api_key: key, webhook_details: { object, event, list_id, url: hookUrl } }));
  assert.ok(Number.isInteger(id) && id > 0, `addWebhook returns an id, got ${JSON.stringify(id)}`);
  console.log(`ok   ${label}: addWebhook ${id}`);

  const webhook = await ok(c, "getWebhookById", p({ api_key: key, webhook_id: id }));
  assert.equal(webhook.id, id);
  assert.equal(webhook.url, hookUrl);
  assert.equal(webhook.object, object);
  assert.equal(webhook.event, event);
  assert.equal(webhook.is_active, true);
  console.log(`ok   ${label}: getWebhookById ${webhook.name}`);

  const details = { description: `edited by ${tag}`, batch_size: 10 };
  assert.equal(await ok(c, "editWebhook", p({ api_key: key, webhook_id: id, webhook_details: details })), true);
  console.log(`ok   ${label}: editWebhook`);

  let found, count;
  if (version === 1) {
    found = await ok(c, "searchWebhooks", [key, criteria, 10, 0, "id", "ASC"]);
    count = await ok(c, "countWebhooks", [key, criteria]);
  } else {
    const replies = await batch(c, [
      ["searchWebhooks", { api_key: key, search_criteria: criteria, limit: 10, sort_by: "id", sort_order: "ASC" }],
      ["countWebhooks", { api_key: key, search_criteria: criteria }],
      ["countWebhooks", { api_key: key }, true], // a notification: executed, not answered
    ]);
    [found, count] = replies.map((r) => {
      assert.ok(r.error === undefined, `batch: unexpected error ${JSON.stringify(r.error)}`);
      return r.result;
    });
  }
  assert.deepEqual(found.map((w) => w.id), [id], "searchWebhooks finds the webhook");
  assert.equal(found[0].description, details.description, "the edit is visible");
  assert.equal(found[0].batch_size, 10);
  assert.equal(count, 1, "countWebhooks");
  console.log(`ok   ${label}: searchWebhooks and countWebhooks${version === 2 ? " (one batch)" : ""}`);

  const eventDetails = { object, event, list_id, data: { client: "jayson", tag } };
  const eventId = await ok(c, "addEvent", p({ api_key: key, event_details: eventDetails }));
  assert.ok(Number.isInteger(eventId) && eventId > 0, `addEvent returns an id, got ${JSON.stringify(eventId)}`);
  console.log(`ok   ${label}: addEvent ${eventId}`);

  const deliveryCriteria = [["event_id", "exactly", eventId]];
  let stored, deliveries;
  if (version === 1) {
    stored = await ok(c, "getEventById", [key, eventId]);
    deliveries = await ok(c, "searchDeliveries", [key, deliveryCriteria]);
  } else {
    [stored, deliveries] = (
      await batch(c, [
        ["getEventById", { api_key: key, event_id: eventId }],
        ["searchDeliveries", { api_key: key, search_criteria: deliveryCriteria }],
      ])
    ).map((r) => {
      assert.ok(r.error === undefined, `batch: unexpected error ${JSON.stringify(r.error)}`);
      return r.result;
    });
  }
  assert.equal(stored.id, eventId);
  assert.equal(stored.object, object);
  assert.equal(stored.event, event);
  assert.deepEqual(stored.data, eventDetails.data);
  assert.equal(stored.list_id, list_id);
  assert.equal(stored.delivery_count, deliveries.length, "delivery_count counts the event's deliveries");
  const ours = deliveries.filter((d) => d.webhook_id === id);
  assert.equal(ours.length, 1, `one delivery to the webhook: ${JSON.stringify(deliveries)}`);
  assert.equal(ours[0].event_id, eventId);
  console.log(`ok   ${label}: getEventById and searchDeliveries: delivery ${ours[0].id}`);

  // 310: an event the catalog does not have for this object; the message names the valid ones.
  const bad = { object, event: "no_such_event", url: `${hookUrl}/bad` };
  const missing = 2_000_000_000;
  let e310, e350;
  if (version === 1) {
    e310 = await fails(c, "addWebhook", [key, bad], 310);
    e350 = await fails(c, "getWebhookById", [key, missing], 350);
  } else {
    const [r310, r350] = await batch(c, [
      ["addWebhook", { api_key: key, webhook_details: bad }],
      ["getWebhookById", { api_key: key, webhook_id: missing }],
    ]);
    e310 = r310.error;
    e350 = r350.error;
    assert.equal(e310?.code, 310, `batch addWebhook: error code (${JSON.stringify(r310)})`);
    assert.equal(e350?.code, 350, `batch getWebhookById: error code (${JSON.stringify(r350)})`);
  }
  assert.ok(JSON.stringify(e310.data ?? e310.message).includes(event), `310 names the valid events: ${JSON.stringify(e310)}`);
  console.log(`error 310 for event no_such_event: ${JSON.stringify(e310.data ?? e310.message)}`);
  console.log(`error 350 for webhook ${missing}: ${e350.message}`);

  assert.equal(await ok(c, "deleteWebhook", p({ api_key: key, webhook_id: id })), true);
  await fails(c, "getWebhookById", p({ api_key: key, webhook_id: id }), 350);
  console.log(`ok   ${label}: deleteWebhook, then 350 for it`);
  if (version === 1) {
    assert.ok(c.wire.sent.every((r) => !("jsonrpc" in r)), "no 1.0 request carried a jsonrpc member");
  }
}

try {
  if (which === "1" || which === "both") await session(1);
  if (which === "2" || which === "both") await session(2);
} catch (e) {
  console.error(`FAIL jayson session against ${url} (${object}.${event}): ${e.message}`);
  process.exit(1);
}
console.log(`jayson (1.0 and 2.0 with batches) ${object}.${event}: all checks passed`);
