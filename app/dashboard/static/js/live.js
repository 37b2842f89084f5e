// Live: events per minute, cache hit rate and p99 latency from the service's own /metrics,
// as differences between successive scrapes (since the start when nothing happened between).
import { api, chartOn, fmt, pct } from "./api.js";

const EVERY_MS = 3000;
const KEEP = 40; // points on the chart
// Requests of the dashboard itself and of probes are not the service's latency.
const QUIET = /^\/(metrics|dashboard|ready|health)|^unmatched$/;
let timer = null;
let previous = null;
const history = [];

// Prometheus text format: name{labels} value, one sample a line.
function parse(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? ([^ ]+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, name, value] of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[name] = value;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function snapshot(samples) {
  const sum = (name, test = () => true) =>
    samples.filter((s) => s.name === name && test(s.labels)).reduce((total, s) => total + s.value, 0);
  const buckets = new Map();
  for (const s of samples) {
    if (s.name !== "tastemaker_http_request_duration_seconds_bucket" || QUIET.test(s.labels.route)) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    buckets.set(le, (buckets.get(le) || 0) + s.value);
  }
  const lookups = { local: {}, redis: {} };
  for (const tier of ["local", "redis"]) {
    for (const result of ["hit", "miss"]) {
      lookups[tier][result] = sum("tastemaker_cache_lookups_total", (l) => l.tier === tier && l.result === result);
    }
  }
  return { at: Date.now(), events: sum("tastemaker_events_total", (l) => l.outcome === "accepted"), buckets, lookups };
}

function p99(buckets) {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) || 0;
  if (!total) return null;
  return bounds.find((le) => buckets.get(le) >= 0.99 * total);
}

function minus(a, b) {
  const buckets = new Map();
  for (const [le, n] of a.buckets) buckets.set(le, n - (b.buckets.get(le) || 0));
  const lookups = { local: {}, redis: {} };
  for (const tier of ["local", "redis"]) {
    for (const r of ["hit", "miss"]) lookups[tier][r] = a.lookups[tier][r] - b.lookups[tier][r];
  }
  return { buckets, lookups };
}

// A hit in either tier over the look-ups of the first tier asked (a miss there asks the next).
function hitRate(lookups) {
  const hits = lookups.local.hit + lookups.redis.hit;
  const first = lookups.local.hit + lookups.local.miss || lookups.redis.hit + lookups.redis.miss;
  return first ? hits / first : null;
}

async function scrape() {
  const now = snapshot(parse(await api("/metrics", { text: true })));
  const delta = previous ? minus(now, previous) : null;
  const seconds = previous ? (now.at - previous.at) / 1000 : 0;
  const perMinute = previous ? ((now.events - previous.events) * 60) / seconds : null;
  // Each figure over the last interval when something happened in it, else since the start.
  const recent = delta && (delta.buckets.get(Infinity) || 0) > 0;
  const latency = p99(recent ? delta.buckets : now.buckets);
  const recentRate = delta ? hitRate(delta.lookups) : null;
  const rate = recentRate === null ? hitRate(now.lookups) : recentRate;
  document.getElementById("live-events").textContent = perMinute === null ? "measuring…" : fmt(perMinute, 0);
  document.getElementById("live-events-total").textContent = fmt(now.events, 0);
  document.getElementById("live-hits").textContent = rate === null ? "no look-ups" : pct(rate);
  document.getElementById("live-p99").textContent =
    latency === null ? "no requests" : latency === Infinity ? "> 5 s" : `≤ ${fmt(latency * 1000, 1)} ms`;
  const over = (yes) => (yes ? `over the last ${fmt(seconds, 0)} s` : "since the service started");
  document.getElementById("live-note").textContent =
    `Hit rate ${over(recentRate !== null)}, p99 ${over(recent)} (the upper bound of its histogram ` +
    `bucket; the dashboard's own and probe requests are left out). Refreshed every ${EVERY_MS / 1000} s.`;
  if (perMinute !== null) {
    history.push({ t: new Date(now.at).toLocaleTimeString(), events: perMinute, hits: rate === null ? null : rate * 100, p99: latency === null || latency === Infinity ? null : latency * 1000 });
    if (history.length > KEEP) history.shift();
    draw();
  }
  previous = now;
}

function draw() {
  chartOn("live-chart", {
    type: "line",
    data: {
      labels: history.map((h) => h.t),
      datasets: [
        { label: "events per minute", data: history.map((h) => h.events), borderColor: "#2557d6", yAxisID: "y" },
        { label: "cache hit rate (%)", data: history.map((h) => h.hits), borderColor: "#188038", yAxisID: "y1" },
        { label: "p99 latency (ms)", data: history.map((h) => h.p99), borderColor: "#e8710a", yAxisID: "y1" },
      ],
    },
    options: {
      animation: false, maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, position: "left" }, y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } },
    },
  });
}

export async function startLive() {
  if (timer) return;
  await scrape();
  timer = setInterval(() => scrape().catch((error) => document.getElementById("error").textContent = error.message), EVERY_MS);
}

export function stopLive() {
  if (timer) clearInterval(timer);
  timer = null;
}
