// The account at a glance: how many webhooks and deliveries need a look, and the account's
// chart of deliveries and latency.

import { call } from "./rpc.js";
import { h, show } from "./dom.js";
import { healthChart } from "./chart.js";

const count = (method, criteria) => call(method, { search_criteria: criteria });

export async function page() {
  const [webhooks, open, pending, failed] = await Promise.all([
    count("countWebhooks", []),
    count("countWebhooks", [["circuit_state", "exactly", "open"]]),
    count("countDeliveries", [["status", "exactly", "pending"]]),
    count("countDeliveries", [["status", "exactly", "failed"]]),
  ]);
  return [
    h("h1", {}, "Overview"),
    h("ul", { class: "tiles" },
      tile(webhooks, "webhooks", "#/webhooks"),
      tile(open, "open circuits", "#/webhooks?state=open"),
      tile(pending, "pending deliveries", "#/deliveries?status=pending"),
      tile(failed, "failed deliveries", "#/deliveries?status=failed")),
    healthChart(0, "All webhooks: deliveries and latency")];
}

function tile(n, what, href) {
  return h("li", {}, h("a", { class: "tile", href }, h("strong", {}, n), h("span", {}, what)));
}
