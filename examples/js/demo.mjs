// The PHP demo's session, in JavaScript, through the OpenRPC-driven SDK:
//   node demo.mjs http://127.0.0.1:8080/ KEY [OBJECT EVENT]
// OBJECT/EVENT (default list/updated) must be in the server's catalog: with --catalog
// examples/shop-catalog.toml, `orders place` (rpc.discover then describes the shop's events).
// Exits non-zero on any surprise, so CI can run it.
import assert from "node:assert/strict";
import { connect } from "./hookrpc.mjs";

const [url = "http://127.0.0.1:8080/", key = process.env.HOOKRPC_KEY, object = "list", event = "updated"] =
  process.argv.slice(2);
const api = await connect(url, key);
console.log(`ok   rpc.discover: ${api.document.methods.length} methods`);

// example.com never receives anything: hookrpc refuses names reserved for documentation. A list
// of its own, so that the demo runs again, and beside the account's other webhooks.
const list = 100000 + Math.floor(Math.random() * 999000000);
const details = { object, event, list_id: list, url: `https://example.com/hooks/js-demo-${list}` };
const id = await api.addWebhook({ webhook_details: details });
console.log(`ok   addWebhook: ${id}`);
try {
  await session(id);
} finally {
  await api.deleteWebhook({ webhook_id: id }).catch(() => {}); // left behind by a failed check
}

async function session(id) {
  const webhook = await api.getWebhookById({ webhook_id: id });
  assert.equal(webhook.url, details.url);
  assert.equal(webhook.batch_size, 100);
  console.log(`ok   getWebhookById: ${webhook.name}`);

  const found = await api.searchWebhooks({ search_criteria: [["url", "contains", `js-demo-${list}`]], sort_by: "id" });
  assert.deepEqual(found.map((w) => w.id), [id]);
  assert.equal(await api.countWebhooks({ search_criteria: [["list_id", "in", [list, list + 1]]] }), 1);
  console.log("ok   searchWebhooks and countWebhooks find it");

  // Other webhooks of the account (for every list) may take the event too: count this one's.
  const [eventId] = await api.addEvents({ events: [{ object, event, list_id: list }] });
  assert.ok((await api.getEventById({ event_id: eventId })).delivery_count >= 1);
  const deliveries = await api.searchDeliveries({
    search_criteria: [["event_id", "exactly", eventId], ["webhook_id", "exactly", id]],
  });
  assert.equal(deliveries.length, 1);
  console.log(`ok   addEvents fanned out: delivery ${deliveries[0].id}`);

  assert.equal(await api.deleteWebhook({ webhook_id: id }), true);
  console.log("ok   deleteWebhook");
}

// Errors arrive as JSONRPCError with the contract's code.
async function errorCode(call) {
  try {
    await call();
  } catch (e) {
    return e.code;
  }
  assert.fail("the call should have failed");
}
assert.equal(await errorCode(() => api.getWebhookById({ webhook_id: id })), 350);
console.log("error 350 for the deleted webhook");
const sdkRefuses = await api
  .addWebhook({ webhook_details: { ...details, url: "ftp://x" } })
  .then(() => false, (e) => e.message.includes("params break the document"));
assert.ok(sdkRefuses, "the document's schema catches a bad url before sending");
console.log("ok   the SDK refuses params that break the document");
const badSearch = await errorCode(() =>
  api.client.request({ method: "countWebhooks", params: { api_key: key, search_criteria: [["url", "like"]] } }),
);
assert.equal(badSearch, 311);
console.log("error 311 for a malformed criterion (sent raw, bypassing the SDK check)");
console.log("JavaScript OpenRPC client: all checks passed");
