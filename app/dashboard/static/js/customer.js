// Try a customer: segment, RFM, predicted value, recent events and each placement's
// recommendations with their reasons; similar items for an item.
import { ApiError, api, el, enc, fmt, pct } from "./api.js";

const PLACEMENTS = [
  ["explore", "Explore (new to them)"],
  ["buy_again", "Buy again"],
  ["home", "Home (both)"],
];

function reason(r) {
  if (!r) return "";
  const about = r.item_id ? ` ${r.item_id}` : r.segment !== undefined ? ` ${r.segment}` : "";
  return `${r.type.replaceAll("_", " ")}${about}`;
}

function itemList(items) {
  if (!items.length) return el("p", { class: "note" }, "nothing to show");
  return el("ol", { class: "items" }, items.map((i) => el("li", { dataset: { item: i.item_id } },
    el("strong", {}, i.item_id), " ", el("span", { class: "reason" }, `— ${reason(i.reason)} (score ${fmt(i.score, 3)})`))));
}

async function optional(promise) {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

async function showCustomer(userId) {
  const box = document.getElementById("customer-result");
  box.replaceChildren(el("p", { class: "note" }, `Asking about ${userId}…`));
  const id = enc(userId);
  const [segment, events, ...recs] = await Promise.all([
    optional(api(`/segment/${id}`)),
    optional(api(`/users/${id}/events?limit=10`)),
    ...PLACEMENTS.map(([p]) => api(`/recommend/${id}?placement=${p}&n=10`)),
  ]);
  const parts = [el("h2", {}, `Customer ${userId}`)];
  if (segment) {
    const rfm = segment.rfm;
    const value = segment.predicted_value;
    parts.push(el("dl", { class: "stats", id: "customer-facts" },
      el("div", {}, el("dt", {}, "Segment"), el("dd", { id: "customer-segment" }, segment.segment.label)),
      el("div", {}, el("dt", {}, "RFM"), el("dd", { id: "customer-rfm" }, rfm ? `R${rfm.r} F${rfm.f} M${rfm.m}` : "–"),
        rfm ? el("p", { class: "note" }, `${rfm.group}: ${fmt(rfm.recency_days, 0)} days since the last purchase, ${fmt(rfm.frequency, 0)} orders, ${fmt(rfm.monetary, 2)} spent`) : null),
      el("div", {}, el("dt", {}, `Predicted spend (${value ? fmt(value.horizon_days, 0) : "–"} d)`),
        el("dd", { id: "customer-value" }, value && value.expected_spend !== null ? fmt(value.expected_spend, 2) : "–"),
        value ? el("p", { class: "note" }, value.reason || `P(active) ${pct(value.p_alive, 0)}, ${fmt(value.expected_orders, 2)} orders expected`) : null),
      el("div", {}, el("dt", {}, "Churn risk"), el("dd", {}, segment.churn_risk || "–"))));
  } else {
    parts.push(el("p", { id: "customer-unknown" }, "No such customer in the store: the recommendations below are a cold start."));
  }
  if (events) {
    parts.push(el("h3", {}, "Recent events"), el("table", { id: "customer-events" },
      el("thead", {}, el("tr", {}, ["When", "Type", "Item", "Value"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, events.map((e) => el("tr", {},
        el("td", {}, new Date(e.occurred_at).toLocaleString()), el("td", {}, e.type), el("td", {}, e.item_id), el("td", {}, fmt(e.value, 2)))))));
  }
  parts.push(el("h3", {}, "Recommendations by placement"), el("div", { class: "recs" },
    PLACEMENTS.map(([p, title], i) => el("section", { class: "panel", dataset: { placement: p } },
      el("h3", {}, title),
      el("p", { class: "note" }, `source: ${recs[i].source}, model version ${recs[i].model_version ?? "none"}`),
      itemList(recs[i].items)))));
  box.replaceChildren(...parts);
}

async function showSimilar(itemId) {
  const box = document.getElementById("similar-result");
  const answer = await optional(api(`/items/${enc(itemId)}/similar?n=10`));
  box.replaceChildren(el("h2", {}, `Items similar to ${itemId}`),
    answer ? el("div", { class: "panel", id: "similar-items" }, el("p", { class: "note" }, `source: ${answer.source}`), itemList(answer.items))
      : el("p", {}, "No such item in the catalogue."));
}

export function initCustomer(handle) {
  document.getElementById("customer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showCustomer(document.getElementById("customer-id").value.trim()).catch(handle);
  });
  document.getElementById("item-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showSimilar(document.getElementById("item-id").value.trim()).catch(handle);
  });
}
