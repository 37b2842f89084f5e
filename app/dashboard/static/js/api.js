// The admin key (kept in this tab's session storage only) and calls to the public API.
const KEY = "tastemaker.adminKey";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  forget: () => sessionStorage.removeItem(KEY),
};

// Every request carries the key in a header, never in the URL.
export async function api(path, { method = "GET", text = false, candidate } = {}) {
  const secret = candidate || key.get();
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${secret}`, Accept: text ? "text/plain" : "application/json" },
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    throw new ApiError(response.status, body);
  }
  return text ? response.text() : response.json();
}

export const enc = encodeURIComponent;

// Build an element: el("td", {class: "x"}, "text", child, ...).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function fmt(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits });
}

export const pct = (share, digits = 1) =>
  share === null || share === undefined ? "–" : `${fmt(share * 100, digits)} %`;

export function showError(error) {
  const box = document.getElementById("error");
  box.textContent = error ? `${error.message}` : "";
}

// A stable colour per segment id; the reserved segments are grey and red.
const PALETTE = ["#2557d6", "#e8710a", "#188038", "#9334e6", "#d01884", "#12b5cb", "#8d6e63", "#f9ab00", "#5f6368", "#1a73e8"];
export function segmentColour(id) {
  if (id === -1) return "#9aa0a6";
  if (id === -2) return "#b3261e";
  return PALETTE[((id % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

export function chartOn(canvasId, config) {
  const canvas = document.getElementById(canvasId);
  const old = window.Chart.getChart(canvas);
  if (old) old.destroy();
  return new window.Chart(canvas, config);
}
