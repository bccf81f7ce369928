// Validates schema/openrpc.json against the official OpenRPC meta-schema
// (@open-rpc/schema-utils-js) and checks that every $ref resolves.
import { readFileSync } from "node:fs";
import { validateOpenRPCDocument, dereferenceDocument } from "@open-rpc/schema-utils-js";

const path = process.argv[2] ?? new URL("../../schema/openrpc.json", import.meta.url);
const doc = JSON.parse(readFileSync(path, "utf8"));
const valid = validateOpenRPCDocument(doc);
if (valid !== true) {
  console.error("schema/openrpc.json breaks the OpenRPC meta-schema:");
  console.error(valid.message ?? valid);
  process.exit(1);
}
await dereferenceDocument(structuredClone(doc));
console.log(`OpenRPC ${doc.openrpc}: ${doc.methods.length} methods, valid against the meta-schema, every $ref resolves`);
