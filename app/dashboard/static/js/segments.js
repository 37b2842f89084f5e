// Segments: the customer map, the RFM grid, the churn-risk mix and a card per segment.
import { api, chartOn, el, fmt, pct, segmentColour } from "./api.js";



function algorithm() {
  return document.querySelector('input[name="algorithm"]:checked').value;
}

export function initSegments(handle) {
  for (const radio of document.querySelectorAll('input[name="algorithm"]')) {
    radio.addEventListener("change", () => loadSegments().catch(handle));
  }
}

export async function loadSegments() {
  const chosen = algorithm();
  const [all, map] = await Promise.all([
    api("/segments"),
    api(`/segments/map?algorithm=${chosen}`),
  ]);

  const segments = all.algorithm === chosen ? all.segments : all.other_algorithm.segments;
  document.getElementById("model-badge").textContent = `model version ${all.model_version}`;
  document.getElementById("segments-summary").textContent =
    `${fmt(all.quality.n_customers, 0)} customers, ${fmt(all.quality.n_purchasers, 0)} with a purchase; ` +
    `${segments.length} segments by ${chosen === "kmeans" ? "K-means" : "DBSCAN"}.`;
  drawMap(map);
  drawGrid(map.rfm_grid);
  drawChurn(all.groups ? all.groups.churn_risk : null);
  drawCards(segments);
}

function drawMap(map) {
  const bySegment = new Map();
  for (const point of map.points) {
    if (!bySegment.has(point.segment_id)) bySegment.set(point.segment_id, []);
    bySegment.get(point.segment_id).push(point);
  }
  const labels = new Map(map.segments.map((s) => [s.segment_id, s.label]));
  const datasets = [...bySegment.keys()].sort((a, b) => a - b).map((id) => ({
    label: `${labels.get(id) || id} (${bySegment.get(id).length})`,
    segmentId: id,
    data: bySegment.get(id),
    backgroundColor: segmentColour(id),
    pointRadius: map.points.length > 2000 ? 2 : 3,
  }));
  chartOn("segment-map", {
    type: "scatter",
    data: { datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: { xAxisKey: "x", yAxisKey: "y" },
      scales: {
        x: { title: { display: true, text: `axis 1 (${pct(map.explained_variance[0], 0)} of variance)` } },
        y: { title: { display: true, text: `axis 2 (${pct(map.explained_variance[1], 0)} of variance)` } },
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: (ctx) => {
              const p = ctx.raw;
              return `${p.user_id} · R${p.r} F${p.f} M${p.m} (${p.group}) · ` +
                `${fmt(p.recency_days, 0)} days, ${fmt(p.frequency, 0)} orders, ${fmt(p.monetary, 2)} spent`;
            },
          },
        },
      },
    },
  });
  const sampled = map.sampled < map.customers ? `a sample of ${fmt(map.sampled, 0)} of ${fmt(map.customers, 0)} customers` : `all ${fmt(map.customers, 0)} customers`;
  document.getElementById("map-note").textContent =
    `${fmt(map.points.length, 0)} purchasers shown from ${sampled}; ` +
    `${fmt(map.no_purchase, 0)} without a purchase are not on the map.`;
}

function drawGrid(grid) {
  const table = document.getElementById("rfm-grid");
  const max = Math.max(1, ...grid.flat());
  const head = el("tr", {}, el("th", { scope: "col" }, "R \\ FM"),
    [1, 2, 3, 4, 5].map((fm) => el("th", { scope: "col" }, `FM ${fm}`)));
  const rows = [5, 4, 3, 2, 1].map((r) => el("tr", {},
    el("th", { scope: "row" }, `R ${r}`),
    [1, 2, 3, 4, 5].map((fm) => {
      const count = grid[r - 1][fm - 1];
      const cell = el("td", { dataset: { r: String(r), fm: String(fm) }, title: `R ${r}, FM ${fm}: ${count} customers` }, String(count));
      const strength = count / max;
      cell.style.backgroundColor = `rgba(37, 87, 214, ${(0.08 + 0.85 * strength).toFixed(3)})`;
      cell.style.color = strength > 0.5 ? "#fff" : "#1d2330";
      return cell;
    })));
  table.replaceChildren(el("caption", { class: "note" }, "R 5: bought most recently; FM 5: buys most often and spends most"),
    el("thead", {}, head), el("tbody", {}, rows));
}

function drawChurn(churn) {
  const list = document.getElementById("churn-counts");
  if (!churn) {
    list.replaceChildren(el("li", {}, "This model version has no churn-risk counts."));
    return;
  }
  const names = ["high", "medium", "low"];
  chartOn("churn-chart", {
    type: "bar",
    data: {
      labels: names.map((n) => `${n} risk`),
      datasets: [{ label: "customers", data: names.map((n) => churn[n] || 0), backgroundColor: ["#b3261e", "#f9ab00", "#188038"] }],
    },
    options: { animation: false, maintainAspectRatio: false, indexAxis: "y", plugins: { legend: { display: false } } },
  });
  list.replaceChildren(...names.map((n) => el("li", { dataset: { risk: n } }, `${n}: `, el("strong", {}, fmt(churn[n] || 0, 0)))));
}

function stat(name, value) {
  return [el("dt", {}, name), el("dd", {}, value)];
}

function drawCards(segments) {
  const cards = segments.map((s) => {
    const value = s.predicted_value;
    const card = el("article", { class: "card", dataset: { segmentId: String(s.segment_id) } },
      el("h3", {}, s.label),
      el("dl", {},
        stat("Customers", el("span", { class: "size" }, fmt(s.size, 0))),
        stat("Share", pct(s.share)),
        stat("Median recency", s.recency_days.median === null ? "–" : `${fmt(s.recency_days.median, 0)} days`),
        stat("Median orders", fmt(s.frequency.median, 1)),
        stat("Median spend", fmt(s.monetary.median, 2)),
        value && value.expected_spend
          ? stat(`Predicted spend (${fmt(value.horizon_days, 0)} d, median)`, fmt(value.expected_spend.median, 2))
          : value && value.expected_orders
            ? stat(`Predicted orders (${fmt(value.horizon_days, 0)} d, median)`, fmt(value.expected_orders.median, 2))
            : stat("Predicted value", "not available"),
        value && value.p_alive ? stat("Median P(active)", pct(value.p_alive.median, 0)) : null),
      el("p", {}, el("strong", {}, "Top categories: "),
        s.top_categories.length ? s.top_categories.slice(0, 4).map((c) => `${c.category} (${pct(c.share, 0)})`).join(", ") : "none"),
      el("p", {}, el("strong", {}, "Top items: "),
        s.top_items && s.top_items.length ? s.top_items.slice(0, 5).map((i) => `${i.item_id} ×${fmt(i.count, 0)}`).join(", ") : "none"));
    card.style.borderLeftColor = segmentColour(s.segment_id);
    return card;
  });
  document.getElementById("segment-cards").replaceChildren(...cards);
}

