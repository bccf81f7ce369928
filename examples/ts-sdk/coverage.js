// @open-rpc/test-coverage against a live, fresh server: every example of schema/openrpc.json is
// sent as written, in document order, with only `$API_KEY` replaced by the server's key (and the
// document's server URL by the live one). test-coverage passes a reply equal to the example's
// result, or else one matching the method's result schema (times and secrets differ run to run);
// on top of that, an example whose result is an integer or a boolean (ids, counts, `true`) must
// get exactly that, so the examples really run in order on a fresh server.
//   node coverage.js ../../schema/openrpc.json http://127.0.0.1:8080/ KEY
// Only the examples rule runs: the json-schema-faker rule invents params (and keys), which a live
// server answers with errors by design. The console-streaming reporter is used because the
// console reporter ends the process itself.
const fs = require("fs");
const { parseOpenRPCDocument } = require("@open-rpc/schema-utils-js");
const coverage = require("@open-rpc/test-coverage").default;
const ExamplesRule = require("@open-rpc/test-coverage/build/rules/examples-rule").default;

const substitute = (v, key) =>
  v === "$API_KEY" ? key
  : Array.isArray(v) ? v.map((i) => substitute(i, key))
  : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, i]) => [k, substitute(i, key)]))
  : v;

async function main() {
  const [file, url, key] = process.argv.slice(2);
  if (!file || !url || !key) throw new Error("usage: node coverage.js openrpc.json URL KEY");
  const raw = JSON.parse(fs.readFileSync(file, "utf8"));
  raw.servers = [{ name: "live", url }];
  for (const m of raw.methods) m.examples = substitute(m.examples, key);
  const openrpcDocument = await parseOpenRPCDocument(raw);
  const examples = raw.methods.reduce((n, m) => n + m.examples.length, 0);

  const calls = await coverage({
    openrpcDocument,
    transport: "http",
    reporters: ["console-streaming"],
    rules: [new ExamplesRule()],
  });
  for (const c of calls) {
    const exact = Number.isInteger(c.expectedResult) || typeof c.expectedResult === "boolean";
    if (c.valid && exact && c.result !== c.expectedResult) {
      c.valid = false;
      c.reason = `expected exactly ${JSON.stringify(c.expectedResult)} but got ${JSON.stringify(c.result)}`;
    }
  }
  const failed = calls.filter((c) => !c.valid);
  for (const c of failed) {
    console.error(`FAIL ${c.methodName} (${c.title}): ${c.reason || (c.requestError && c.requestError.message) || JSON.stringify(c.error)}`);
  }
  if (calls.length !== examples) throw new Error(`${calls.length} calls for ${examples} examples`);
  if (failed.length) throw new Error(`${failed.length} of ${calls.length} examples failed`);
  console.log(`@open-rpc/test-coverage: all ${calls.length} examples passed against ${url}`);
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
