// The dashboard's only way to the server: JSON-RPC 2.0 calls to the public API, with the key
// the user signed in with. The key lives in this tab's session storage and travels only inside
// call bodies (never in a URL, a header or a cookie).

const KEY = "hookrpc.key";
// The endpoint is the parent of /ui/, so a server behind a proxy path works unchanged.
const ENDPOINT = new URL("..", document.baseURI).href;

let nextId = 1;

export class RpcError extends Error {
  constructor({ code, message, data }) {
    super(message);
    this.code = code;
    this.data = data;
  }

  // 310's data: [{field, message}] (empty for other errors).
  get problems() {
    return this.code === 310 && Array.isArray(this.data) ? this.data : [];
  }

  // The API's own words, with their details.
  describe() {
    const details = this.problems.map((p) => `${p.field}: ${p.message}`);
    if (typeof this.data === "string") details.push(this.data);
    if (this.data && this.data.request_id) details.push(`request id ${this.data.request_id}`);
    return [`${this.message} (${this.code})`, ...details].join(" — ");
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

// Calls `method` with params by name, the key first; resolves to its result.
export async function call(method, params = {}) {
  return send(method, { api_key: key.get(), ...params });
}

// A call without a key (rpc.discover).
export async function callWithoutKey(method) {
  return send(method, []);
}

async function send(method, params) {
  const id = nextId++;
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id, method, params }),
    credentials: "omit",
    cache: "no-store",
  });
  const reply = await response.text().then((text) => numbersOutsideData(parseJson(text))).catch(() => null);
  if (!reply) throw new RpcError({ code: response.status, message: `HTTP ${response.status}` });
  if (reply.error) throw new RpcError(reply.error);
  return reply.result;
}

// JSON.parse, but a number a JS number cannot hold as written (12345678901234567890123, 1.50,
// 1e2: event data and webhook metadata are kept exactly as their client wrote them) stays as
// written: shown so, and sent back so by JSON.stringify, where the browser can (JSON.rawJSON).
export function parseJson(text) {
  if (!JSON.rawJSON) return JSON.parse(text);
  return JSON.parse(text, (_, value, context) =>
    typeof value === "number" && context && String(value) !== context.source
      ? JSON.rawJSON(context.source)
      : value);
}

// Members whose numbers are the client's, kept as written; every other number is the app's own
// (an id, a count, a time), which the page does arithmetic and text with: back to a Number.
const WRITTEN_BY_CLIENTS = new Set(["data", "metadata"]);

function numbersOutsideData(value) {
  if (JSON.isRawJSON?.(value)) return Number(value.rawJSON);
  if (Array.isArray(value)) return value.map(numbersOutsideData);
  if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (!WRITTEN_BY_CLIENTS.has(k)) value[k] = numbersOutsideData(v);
    }
  }
  return value;
}

// What the app learnt about the signed-in key and the server.
export const session = {
  // A full key may change things; a standard key gets the read-only portal.
  full: false,
  // The server's catalog: object → its events (from rpc.discover).
  catalog: {},
};

// Signs in: learns whether the key is valid and full, by asking the API. The API tells what a
// key may do only by refusing, so the probe is a full-level call that cannot change anything:
// editWebhook of webhook 0, which no account has. A full key hears 310 (no such id), a
// standard key 321, a bad key 300 (thrown).
export async function learnAccess() {
  try {
    await call("editWebhook", { webhook_id: 0, webhook_details: {} });
    session.full = true; // not expected; a server that took it would grant full access
  } catch (e) {
    if (!(e instanceof RpcError) || (e.code !== 310 && e.code !== 321)) throw e;
    session.full = e.code === 310;
  }
}

// Reads the catalog from the OpenRPC document the server serves (its own, so an operator's
// catalog shows up here too): the events each object has are the if/then rules of
// WebhookDetailsNew.
export async function learnCatalog() {
  const doc = await callWithoutKey("rpc.discover");
  const rules = doc.components.schemas.WebhookDetailsNew.allOf || [];
  session.catalog = {};
  for (const rule of rules) {
    const object = rule.if.properties.object.const;
    session.catalog[object] = rule.then.properties.event.enum;
  }
}
