// A hookrpc SDK built at run time from the server's own OpenRPC document (rpc.discover):
// one async function per documented method, params checked against the declared param
// schemas before sending (by name, as generated SDKs send them), and every result checked
// against the declared result schema. Nothing here knows hookrpc's methods by heart.
import { Client, RequestManager, HTTPTransport } from "@open-rpc/client-js";
import { dereferenceDocument, MethodCallValidator } from "@open-rpc/schema-utils-js";
import Ajv from "ajv";

export async function connect(url, apiKey) {
  const client = new Client(new RequestManager([new HTTPTransport(url)]));
  const document = await dereferenceDocument(
    await client.request({ method: "rpc.discover", params: [] }),
  );
  const paramsValidator = new MethodCallValidator(document);
  const ajv = new Ajv();
  // `client` stays reachable for calls that deliberately bypass the document's checks.
  const sdk = { document, client };
  for (const method of document.methods) {
    const resultIsValid = ajv.compile(method.result.schema);
    sdk[method.name] = async (args = {}) => {
      const params = { api_key: apiKey, ...args };
      const problems = paramsValidator.validate(method.name, params);
      if (problems.length > 0) {
        throw new Error(`${method.name}: params break the document: ${problems.map((p) => p.message).join("; ")}`);
      }
      const result = await client.request({ method: method.name, params });
      if (!resultIsValid(result)) {
        throw new Error(`${method.name}: result breaks the declared schema: ${ajv.errorsText(resultIsValid.errors)}`);
      }
      return result;
    };
  }
  return sdk;
}
