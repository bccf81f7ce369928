// Creating and editing a webhook. The form sends what was typed and lets the API judge it:
// its 310 problems are shown beside the fields they name, in the API's own words, so the
// rules live in one place (the server's validator).

import { call, parseJson, RpcError, session } from "./rpc.js";
import { field, flash, h, select } from "./dom.js";
import { showSecretOnce } from "./webhooks.js";

export async function create() {
  return formPage(null);
}

export async function edit(params, id) {
  return formPage(await call("getWebhookById", { webhook_id: id }));
}

function formPage(webhook) {
  const title = webhook ? `Edit ${webhook.name}` : "New webhook";
  return [
    h("p", { class: "crumbs" }, h("a", { href: webhook ? `#/webhooks/${webhook.id}` : "#/webhooks" },
      webhook ? webhook.name : "Webhooks")),
    h("h1", {}, title),
    session.full ? webhookForm(webhook) : h("p", { class: "notice error" }, "This key is read-only."),
  ];
}

function webhookForm(w) {
  const objects = Object.keys(session.catalog);
  const object = select({ name: "object" }, objects, w ? w.object : objects[0]);
  const event = h("select", { name: "event" });
  const fillEvents = () => {
    const events = session.catalog[object.value] || [];
    event.replaceChildren(...events.map((e) => h("option", { value: e, selected: w && w.event === e }, e)));
  };
  object.addEventListener("change", fillEvents);
  fillEvents();
  const text = (name, value, attrs = {}) => h("input", { name, value: value ?? "", ...attrs });
  const area = (name, value) => h("textarea", { name, rows: 3 }, value);
  const general = h("div", { class: "form-error", role: "alert" });
  const form = h("form", { class: "card webhook-form", novalidate: true },
    general,
    field("URL", text("url", w?.url, { type: "url", placeholder: "https://…", required: true })),
    h("div", { class: "row" }, field("Object", object), field("Event", event)),
    field("Name", text("name", w?.name), "Defaults to object.event."),
    field("Description", area("description", w?.description || "")),
    h("div", { class: "row" },
      field("List id", text("list_id", w?.list_id ?? 0, { inputmode: "numeric" }), "0 watches every list."),
      field("Batch size", text("batch_size", w?.batch_size ?? 100, { inputmode: "numeric" }), "Most events one request carries (1–1000).")),
    field("Active", h("input", { name: "is_active", type: "checkbox", checked: w ? w.is_active : true })),
    field("Headers", area("headers", (w?.headers || []).map((x) => `${x.name}: ${x.value}`).join("\n")),
      "One per line, as Name: value."),
    h("div", { class: "row" },
      field("Basic auth user", text("auth.username", w?.auth?.username, { autocomplete: "off" })),
      field("Basic auth password", text("auth.password", "", { type: "password", autocomplete: "new-password" }),
        w?.auth ? "Leave empty to keep the current one." : null)),
    w ? null : field("Signing secret", text("secret", "", { autocomplete: "off", placeholder: "whsec_…" }),
      "Leave empty to have one generated."),
    field("Metadata", area("metadata", JSON.stringify(w?.metadata || {}, null, 2)), "A JSON object, returned as given."),
    h("div", { class: "actions" }, h("button", { class: "primary" }, w ? "Save" : "Create webhook")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit(form, w, general);
  });
  return form;
}

async function submit(form, w, general) {
  const button = form.querySelector("button.primary");
  clearProblems(form, general);
  const { details, problems } = detailsOf(form, w);
  if (problems.length) return showProblems(form, general, problems);
  button.disabled = true;
  try {
    if (w) {
      await call("editWebhook", { webhook_id: w.id, webhook_details: details });
      flash("Saved.");
      location.hash = `#/webhooks/${w.id}`;
    } else {
      const id = await call("addWebhook", { webhook_details: details });
      const created = await call("getWebhookById", { webhook_id: id });
      location.hash = `#/webhooks/${id}`;
      await showSecretOnce("Webhook created: its signing secret", created.secret);
    }
  } catch (e) {
    if (!(e instanceof RpcError)) throw e;
    showProblems(form, general, e.problems, e.problems.length ? "" : e.describe());
  } finally {
    button.disabled = false;
  }
}

// The form as webhook_details: on an edit only what changed. Problems are what cannot even be
// sent (a header line without a colon, metadata that is no JSON).
function detailsOf(form, w) {
  const value = (name) => form.elements[name].value;
  const problems = [];
  const details = {
    url: value("url").trim(),
    object: value("object"),
    event: value("event"),
    name: value("name").trim() || undefined,
    description: value("description"),
    list_id: value("list_id").trim(),
    batch_size: value("batch_size").trim(),
    is_active: form.elements.is_active.checked,
    headers: headersOf(value("headers"), problems),
    metadata: metadataOf(value("metadata"), problems),
  };
  const auth = authOf(value("auth.username"), value("auth.password"), w);
  if (auth !== undefined) details.auth = auth;
  if (!w && value("secret").trim()) details.secret = value("secret").trim();
  if (w) {
    for (const [k, v] of Object.entries(details)) {
      if (k !== "auth" && JSON.stringify(v) === JSON.stringify(typeof w[k] === "number" ? String(w[k]) : w[k])) delete details[k];
    }
  }
  for (const [k, v] of Object.entries(details)) if (v === undefined) delete details[k];
  return { details, problems };
}

function headersOf(textValue, problems) {
  const headers = [];
  textValue.split("\n").map((line) => line.trim()).filter(Boolean).forEach((line, i) => {
    const colon = line.indexOf(":");
    if (colon < 1) problems.push({ field: "headers", message: `line ${i + 1} is not Name: value` });
    else headers.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() });
  });
  return headers;
}

function metadataOf(textValue, problems) {
  if (!textValue.trim()) return {};
  try {
    return parseJson(textValue);
  } catch (e) {
    problems.push({ field: "metadata", message: `is not JSON: ${e.message}` });
    return undefined;
  }
}

// auth as editWebhook takes it: given in full, null to remove it, or left out to keep it (the
// API never shows the password, so an empty password field means "unchanged").
function authOf(username, password, w) {
  if (!username && !password) return w?.auth ? null : undefined;
  if (w?.auth && username === w.auth.username && !password) return undefined;
  return { username, password };
}

function clearProblems(form, general) {
  general.replaceChildren();
  for (const error of form.querySelectorAll(".field-error")) {
    error.hidden = true;
    error.textContent = "";
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

// Each problem beside the field it names (`headers[0].name` is the headers field's); what
// names no field of the form goes above it, with `message`.
function showProblems(form, general, problems, message = "") {
  const unplaced = [];
  for (const problem of problems) {
    const box = form.querySelector(`[data-field="${CSS.escape(problem.field)}"]`)
      || form.querySelector(`[data-field="${CSS.escape(problem.field.split(/[.[]/)[0])}"]`);
    if (!box) {
      unplaced.push(`${problem.field}: ${problem.message}`);
      continue;
    }
    const error = box.querySelector(".field-error");
    error.textContent = error.textContent ? `${error.textContent}; ${problem.message}` : problem.message;
    error.hidden = false;
    box.querySelector("input, select, textarea").setAttribute("aria-invalid", "true");
  }
  const lines = [message, ...unplaced].filter(Boolean);
  if (lines.length || problems.length) {
    general.replaceChildren(problems.length ? h("p", {}, "Please correct the fields below.") : "",
      ...lines.map((line) => h("p", {}, line)));
  }
  const first = form.querySelector("[aria-invalid]");
  if (first) first.focus();
}
