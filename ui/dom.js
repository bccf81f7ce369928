// Small helpers that build the page from DOM nodes (never from HTML strings: everything the
// API returns is shown as text, so nothing a webhook's name or an event's data holds can run).

const SVG = "http://www.w3.org/2000/svg";

// An element: `h("a", {href: "#/"}, "text", child, [more], null)`. Attributes named on… are
// event handlers; `class` and `for` are the HTML names.
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// An SVG element, as `h` builds HTML ones.
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

let shown = false;

// Replaces the page's content. After the first page, focus moves to the new heading, as a page
// load would put a screen reader there; the first page leaves focus at the start (skip link).
export function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes.flat().filter((node) => node !== null && node !== false));
  const heading = main.querySelector("h1");
  if (heading && shown) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
  shown = true;
}

// A message for the user in the live region (read out by screen readers).
export function notify(text, kind = "ok") {
  const area = document.getElementById("notice");
  area.replaceChildren(text ? h("p", { class: `notice ${kind}` }, text) : "");
}

// Epoch seconds as a <time>, in the reader's time zone.
export function when(seconds) {
  if (seconds === null || seconds === undefined) return h("span", { class: "muted" }, "never");
  const date = new Date(seconds * 1000);
  return h("time", { datetime: date.toISOString() }, date.toLocaleString());
}

// A table in a scrolling wrapper (phones); `columns` are [heading, row => cell content].
export function table(caption, columns, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row))))))));
}

// Name/value pairs as a definition list.
export function facts(pairs) {
  return h("dl", { class: "facts" },
    pairs.filter(Boolean).map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

export function badge(text, kind = text) {
  return h("span", { class: `badge ${kind}` }, text);
}

// Pretty JSON, as text.
export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

// A labelled control with a place for the API's message about it (310's data).
export function field(label, control, hint) {
  const id = control.getAttribute("id") || `f-${control.getAttribute("name")}`;
  control.setAttribute("id", id);
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const hintNode = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  control.setAttribute("aria-describedby", [hintNode && `${id}-hint`, `${id}-error`].filter(Boolean).join(" "));
  return h("div", { class: "field", "data-field": control.getAttribute("name") },
    h("label", { for: id }, label), control, hintNode, error);
}

// A <select> of `options` ([value, label] or value), with `selected` chosen.
export function select(attrs, options, selected) {
  return h("select", attrs, options.map((option) => {
    const [value, label] = Array.isArray(option) ? option : [option, option];
    return h("option", { value, selected: String(value) === String(selected ?? "") }, label);
  }));
}

// Asks a question in the page's dialog; resolves to true when the user confirms. `body` may
// hold nodes; `ok` is the confirming button's label (null: a message with one button).
export function ask(title, body, ok = "OK") {
  const dialog = document.getElementById("dialog");
  const okButton = document.getElementById("dialog-ok");
  const cancel = document.getElementById("dialog-cancel");
  document.getElementById("dialog-title").textContent = title;
  document.getElementById("dialog-body").replaceChildren(...[body].flat());
  okButton.textContent = ok || "Close";
  cancel.hidden = !ok;
  return new Promise((resolve) => {
    const finish = (answer) => () => dialog.close(answer);
    okButton.onclick = finish("ok");
    cancel.onclick = finish("cancel");
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// "Previous / Next" links for a list of `total` rows shown `limit` at a time from `offset`.
export function pager(total, offset, limit, hrefFor) {
  if (total <= limit) return null;
  const last = Math.min(offset + limit, total);
  return h("nav", { class: "pager", "aria-label": "Pages" },
    offset > 0 ? h("a", { href: hrefFor(Math.max(0, offset - limit)) }, "← Previous") : null,
    h("span", {}, `${offset + 1}–${last} of ${total}`),
    last < total ? h("a", { href: hrefFor(offset + limit) }, "Next →") : null);
}

// A button that runs `action` once per click, disabled while it runs; failures are shown.
export function action(label, run, attrs = {}) {
  const button = h("button", { type: "button", ...attrs }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await run();
    } catch (e) {
      notify(e.describe ? e.describe() : String(e), "error");
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

let flashed = null;

// A message for the page the app goes to next (navigation clears the current one).
export function flash(text, kind = "ok") {
  flashed = [text, kind];
}

// Shows what was flashed for this page, or clears the last page's message.
export function showFlashed() {
  notify(...(flashed || [""]));
  flashed = null;
}

// A filter form for a list view: on submit, the app goes to `route` with the form's non-empty
// values as the query (so a filtered list has an address, and Back works).
export function filters(route, label, ...controls) {
  const form = h("form", { class: "filters", role: "search", "aria-label": label, novalidate: true },
    controls, h("div", { class: "actions" }, h("button", { class: "primary" }, "Show")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value !== "") query.set(name, value);
    const target = `#${route}${query.size ? `?${query}` : ""}`;
    if (location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = target;
  });
  return form;
}

// `#route?query` with `changes` applied to `params` (null removes one).
export function hrefWith(route, params, changes) {
  const query = new URLSearchParams(params);
  for (const [name, value] of Object.entries(changes)) {
    if (value === null || value === "" || value === 0) query.delete(name);
    else query.set(name, String(value));
  }
  return `#${route}${query.size ? `?${query}` : ""}`;
}
