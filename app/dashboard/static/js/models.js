// Models: versions with their metrics, NDCG across versions, activation and retraining.
import { api, chartOn, el, enc, fmt } from "./api.js";

const COLUMNS = ["ndcg", "precision", "recall", "map", "hit_rate", "coverage"];
let versions = [];
let shown = null; // the version whose metrics are shown
let watching = null; // the retrain run being watched
let onError = () => {};

const recommender = (v) => (v.metrics && v.metrics.recommender) || {};
const ndcgOf = (v, model) => {
  const m = recommender(v).models;
  return m && m[model] ? m[model].ndcg : null;
};

export function initModels(handle) {
  onError = handle;
  document.getElementById("retrain").addEventListener("click", () => retrain().catch(handle));
}

export async function loadModels() {
  versions = await api("/models");
  const active = versions.find((v) => v.is_active);
  if (shown === null || !versions.some((v) => v.version === shown)) shown = active ? active.version : null;
  document.getElementById("model-badge").textContent = active ? `model version ${active.version}` : "no model yet";
  drawVersions(active);
  drawNdcg();
  drawMetrics();
}

function drawVersions(active) {
  const head = el("tr", {}, ["Version", "Trained", "NDCG served", "NDCG popularity", "State", ""].map((h) => el("th", { scope: "col" }, h)));
  const rows = versions.map((v) => {
    const action = v.is_active
      ? el("strong", {}, "active")
      : el("button", { type: "button", class: "secondary", dataset: { activate: String(v.version) } },
        active && v.version < active.version ? `Roll back to v${v.version}` : `Activate v${v.version}`);
    const details = el("button", { type: "button", class: "secondary", dataset: { show: String(v.version) }, "aria-pressed": String(v.version === shown) }, "Metrics");
    return el("tr", { dataset: { version: String(v.version) } },
      el("td", {}, `v${v.version}`),
      el("td", {}, new Date(v.created_at).toLocaleString()),
      el("td", { class: "ndcg" }, fmt(ndcgOf(v, "served"), 4)),
      el("td", {}, fmt(ndcgOf(v, "popularity"), 4)),
      el("td", {}, action, v.note ? el("p", { class: "note" }, v.note) : null),
      el("td", {}, details));
  });
  const table = document.getElementById("versions");
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  for (const button of table.querySelectorAll("[data-activate]")) {
    button.addEventListener("click", () => activate(Number(button.dataset.activate)).catch(onError));
  }
  for (const button of table.querySelectorAll("[data-show]")) {
    button.addEventListener("click", () => {
      shown = Number(button.dataset.show);
      drawVersions(active);
      drawMetrics();
    });
  }
}

function drawNdcg() {
  const ordered = [...versions].sort((a, b) => a.version - b.version);
  chartOn("ndcg-chart", {
    type: "line",
    data: {
      labels: ordered.map((v) => `v${v.version}${v.is_active ? " (active)" : ""}`),
      datasets: [
        { label: "served blend", data: ordered.map((v) => ndcgOf(v, "served")), borderColor: "#2557d6", backgroundColor: "#2557d6" },
        { label: "popularity", data: ordered.map((v) => ndcgOf(v, "popularity")), borderColor: "#9aa0a6", backgroundColor: "#9aa0a6", borderDash: [5, 4] },
      ],
    },
    options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true, title: { display: true, text: "NDCG@10" } } } },
  });
}

function metricsTable(caption, rows, id) {
  if (!rows || !Object.keys(rows).length) return el("p", { class: "note" }, `${caption}: not measured in this version.`);
  const head = el("tr", {}, el("th", { scope: "col" }, "model"), COLUMNS.map((c) => el("th", { scope: "col" }, c)));
  const body = Object.entries(rows).map(([name, m]) => el("tr", { dataset: { model: name } },
    el("th", { scope: "row" }, name === "popularity" ? "popularity (baseline)" : name),
    COLUMNS.map((c) => el("td", {}, fmt(m[c], 4)))));
  return el("figure", { class: "panel" }, el("figcaption", {}, caption), el("table", { id }, el("thead", {}, head), el("tbody", {}, body)));
}

function drawMetrics() {
  const box = document.getElementById("version-metrics");
  const v = versions.find((x) => x.version === shown);
  document.getElementById("metrics-title").textContent = v ? `Metrics of v${v.version} (k = 10)` : "Metrics";
  if (!v) {
    box.replaceChildren(el("p", {}, "No trained version yet: start a retrain."));
    return;
  }
  const r = recommender(v);
  box.replaceChildren(
    metricsTable("Explore target: items new to each customer, per model", r.models, "explore-metrics"),
    metricsTable("Repeat (next-basket) target: each placement beside popularity", r.next_basket, "repeat-metrics"));
}

async function activate(version) {
  const active = versions.find((v) => v.is_active);
  const verb = active && version < active.version ? "Roll back" : "Activate";
  if (!window.confirm(`${verb} to model version ${version}? Every worker swaps to it within seconds.`)) return;
  await api(`/models/${enc(version)}/activate`, { method: "POST" });
  shown = version;
  await loadModels();
}

async function retrain() {
  if (watching) return;
  const button = document.getElementById("retrain");
  const status = document.getElementById("retrain-status");
  button.disabled = true;
  try {
    const accepted = await api("/retrain", { method: "POST" });
    watching = accepted.run_id;
    const started = Date.now();
    for (;;) {
      const run = await api(accepted.status_url);
      const seconds = Math.round((Date.now() - started) / 1000);
      status.dataset.status = run.status;
      if (run.status === "succeeded") {
        shown = run.model_version;
        await loadModels();
        const made = versions.find((v) => v.version === run.model_version);
        status.textContent = `Run ${run.id} succeeded: model version ${run.model_version}` +
          (made && !made.is_active ? ", not activated (see its note)." : ", now active.");
        break;
      }
      if (run.status === "failed") {
        status.textContent = `Run ${run.id} failed: ${run.error}`;
        break;
      }
      status.textContent = `Run ${run.id} ${run.status}… ${seconds} s`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  } finally {
    watching = null;
    button.disabled = false;
  }
}
