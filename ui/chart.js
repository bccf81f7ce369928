// The health chart: deliveries by outcome as stacked bars, attempt latency (p50, p99) as lines
// on a second scale, drawn as inline SVG from getDeliveryStats' buckets. The same numbers are
// in a table under it, for screen readers and for reading exact values.

import { call } from "./rpc.js";
import { h, s, select, table } from "./dom.js";

const WIDTH = 720;
const HEIGHT = 220;
const PAD = { top: 12, right: 52, bottom: 28, left: 44 };
const OUTCOMES = ["succeeded", "retried", "failed"];

// The periods a reader can pick: [label, seconds back, interval].
export const PERIODS = [
  ["Last hour, by minute", 3600, 60],
  ["Last 24 hours, by hour", 86400, 3600],
  ["Last 7 days, by 6 hours", 7 * 86400, 6 * 3600],
  ["Last 30 days, by day", 30 * 86400, 86400],
];

// A chart of one webhook (or of the account, webhookId 0) with a period picker.
export function healthChart(webhookId, heading) {
  const holder = h("div", { class: "chart-body" }, h("p", { class: "muted" }, "Loading…"));
  const picker = select({ name: "period", "aria-label": "Period" },
    PERIODS.map(([label], i) => [i, label]), 1);
  const load = async () => {
    const [, back, interval] = PERIODS[Number(picker.value)];
    // The end of the current second: a period ends before its until, and an attempt
    // recorded in this second is stamped with it.
    const until = Math.floor(Date.now() / 1000) + 1;
    const buckets = await call("getDeliveryStats",
      { webhook_id: webhookId, since: until - back, until, interval });
    holder.replaceChildren(...drawStats(buckets, interval));
    holder.dataset.interval = interval; // which period is drawn (tests wait for it)
  };
  picker.addEventListener("change", () => load().catch(showError(holder)));
  load().catch(showError(holder));
  return h("section", { class: "card chart", "aria-label": heading },
    h("div", { class: "chart-head" }, h("h2", {}, heading), picker), holder);
}

function showError(holder) {
  return (e) => holder.replaceChildren(h("p", { class: "notice error" }, e.describe ? e.describe() : String(e)));
}

// The chart, its legend and summary, and the table of its numbers.
export function drawStats(buckets, interval) {
  const totals = sum(buckets);
  const summary = `${totals.succeeded} delivered, ${totals.retried} retried, ${totals.failed} failed in ${totals.attempts} attempts` +
    (totals.p99 === null ? "" : `; slowest p99 ${totals.p99} ms`);
  return [
    h("p", { class: "summary" }, summary),
    plot(buckets, interval, summary),
    legend(),
    h("details", {}, h("summary", {}, "The numbers"),
      table("Deliveries and latency per interval",
        [["Start", (b) => label(b.time, interval, true)], ...OUTCOMES.map((o) => [o, (b) => b[o]]),
          ["attempts", (b) => b.attempts], ["p50 ms", (b) => b.p50_ms ?? "–"], ["p99 ms", (b) => b.p99_ms ?? "–"]],
        buckets.filter((b) => b.attempts > 0), "No attempts in this period.")),
  ];
}

function sum(buckets) {
  const totals = { succeeded: 0, retried: 0, failed: 0, attempts: 0, p99: null };
  for (const b of buckets) {
    for (const k of [...OUTCOMES, "attempts"]) totals[k] += b[k];
    if (b.p99_ms !== null) totals.p99 = Math.max(totals.p99 ?? 0, b.p99_ms);
  }
  return totals;
}

function plot(buckets, interval, summary) {
  const width = WIDTH - PAD.left - PAD.right;
  const height = HEIGHT - PAD.top - PAD.bottom;
  const most = roundUp(Math.max(...buckets.map((b) => b.succeeded + b.retried + b.failed)));
  const slowest = roundUp(Math.max(...buckets.map((b) => b.p99_ms ?? 0)));
  const step = width / buckets.length;
  const y = (n) => PAD.top + height - (n / most) * height;
  const yMs = (ms) => PAD.top + height - (ms / slowest) * height;
  const x = (i) => PAD.left + i * step;
  return s("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "plot", role: "img", "aria-label": summary },
    s("title", {}, summary),
    grid(most, slowest, y, yMs, width),
    buckets.map((b, i) => bars(b, x(i), step, y)),
    latencyLine(buckets, "p50_ms", x, step, yMs),
    latencyLine(buckets, "p99_ms", x, step, yMs),
    timeLabels(buckets, interval, x, step));
}

// The top of a scale: at least `n`, a round number, even (so the middle line is whole).
function roundUp(n) {
  const power = 10 ** Math.floor(Math.log10(Math.max(n, 2)));
  return [1, 2, 4, 6, 8, 10].map((m) => m * power).find((top) => top >= Math.max(n, 2));
}

function grid(most, slowest, y, yMs, width) {
  return [0, 0.5, 1].map((f) => s("g", { class: "grid" },
    s("line", { x1: PAD.left, x2: PAD.left + width, y1: y(most * f), y2: y(most * f) }),
    s("text", { x: PAD.left - 6, y: y(most * f) + 4, class: "axis left" }, Math.round(most * f)),
    s("text", { x: PAD.left + width + 6, y: yMs(slowest * f) + 4, class: "axis right" }, `${Math.round(slowest * f)} ms`)));
}

function bars(bucket, left, step, y) {
  let base = 0;
  return OUTCOMES.map((outcome) => {
    const n = bucket[outcome];
    if (!n) return null;
    const top = y(base + n);
    const rect = s("rect", { class: `bar ${outcome}`, x: left + step * 0.1, width: Math.max(1, step * 0.8),
      y: top, height: y(base) - top, "data-count": n },
      s("title", {}, `${n} ${outcome}`));
    base += n;
    return rect;
  });
}

function latencyLine(buckets, member, x, step, yMs) {
  // Buckets without attempts break the line rather than drawing it through zero.
  const runs = [[]];
  buckets.forEach((b, i) => {
    if (b[member] === null) {
      if (runs.at(-1).length) runs.push([]);
    } else runs.at(-1).push([x(i) + step / 2, yMs(b[member])]);
  });
  return runs.filter((run) => run.length).map((run) => (run.length > 1
    ? s("polyline", { class: `latency ${member}`, points: run.map((p) => p.join(",")).join(" ") })
    : s("circle", { class: `latency ${member}`, cx: run[0][0], cy: run[0][1], r: 2.5 })));
}

function timeLabels(buckets, interval, x, step) {
  const every = Math.max(1, Math.ceil(buckets.length / 6));
  return buckets.map((b, i) => (i % every ? null
    : s("text", { x: x(i) + step / 2, y: HEIGHT - 8, class: "axis time" }, label(b.time, interval))));
}

function label(seconds, interval, long = false) {
  const date = new Date(seconds * 1000);
  const clock = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (interval >= 86400) return date.toLocaleDateString();
  return long || interval >= 6 * 3600 ? `${date.toLocaleDateString()} ${clock}` : clock;
}

function legend() {
  const item = (kind, text) => h("li", {}, h("span", { class: `swatch ${kind}`, "aria-hidden": "true" }), text);
  return h("ul", { class: "legend" },
    item("succeeded", "delivered"), item("retried", "failed, retried"), item("failed", "failed for good"),
    item("p50_ms", "p50 latency"), item("p99_ms", "p99 latency"));
}
