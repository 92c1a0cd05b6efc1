// Charts: every numeric field found in the JSON of a topic filter, as live lines over a sliding time window.
// Points are collected as messages arrive and the chart is redrawn at most once per animation frame, so
// 100 messages/s cost 60 redraws/s at most, not 100.
import uPlot from "../vendor/uPlot.esm.js";
import { conn } from "./conn.js";
import { decode, el } from "./format.js";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2"];
const MAX_FIELDS_PER_MESSAGE = 32;
const DEFAULT_SELECTED = 6;
let root;
let xs = [];
let ys = new Map(); // series key -> values aligned with xs (null where a message lacked the field)
let selected = new Set();
let windowSeconds = 60;
let plot = null;
let rebuild = true;
let frame = 0;
let unsubscribe = null;

function numericFields(value, path = [], out = []) {
  if (out.length >= MAX_FIELDS_PER_MESSAGE) return out;
  if (typeof value === "number" && Number.isFinite(value)) out.push([path.join(".") || "(value)", value]);
  else if (typeof value === "boolean") out.push([path.join(".") || "(value)", value ? 1 : 0]);
  else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) numericFields(v, [...path, k], out);
  }
  return out;
}

function onMessage(msg) {
  const d = decode(msg.payload);
  if (d.kind !== "json") return;
  const fields = numericFields(d.json);
  if (!fields.length) return;
  const multiTopic = /[+#]/.test(currentFilter());
  xs.push(msg.received / 1000);
  const seen = new Set();
  for (const [path, v] of fields) {
    const key = multiTopic ? `${msg.topic} › ${path}` : path;
    let arr = ys.get(key);
    if (!arr) {
      arr = new Array(xs.length - 1).fill(null);
      ys.set(key, arr);
      if (selected.size < DEFAULT_SELECTED) selected.add(key);
      addFieldToggle(key);
      rebuild = true;
    }
    arr.push(v);
    seen.add(key);
  }
  for (const [key, arr] of ys) if (!seen.has(key)) arr.push(null);
  if (!frame) frame = requestAnimationFrame(draw);
}

function currentFilter() {
  return root.querySelector("#chart-form").filter.value.trim();
}

function addFieldToggle(key) {
  const box = el("input", { type: "checkbox", value: key, checked: selected.has(key) });
  box.addEventListener("change", () => {
    if (box.checked) selected.add(key); else selected.delete(key);
    rebuild = true;
    if (!frame) frame = requestAnimationFrame(draw);
  });
  root.querySelector("#chart-fields").append(el("label", {}, box, ` ${key}`));
}

function trim(now) {
  let cut = 0;
  while (cut < xs.length && xs[cut] < now - windowSeconds) cut++;
  if (cut) { xs = xs.slice(cut); for (const [k, arr] of ys) ys.set(k, arr.slice(cut)); }
}

function build() {
  const container = root.querySelector("#chart");
  if (plot) { plot.destroy(); plot = null; }
  container.replaceChildren();
  const keys = [...ys.keys()].filter((k) => selected.has(k));
  if (!keys.length) return;
  const fg = getComputedStyle(document.body).color;
  const grid = getComputedStyle(document.documentElement).getPropertyValue("--line").trim() || "#ccc";
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  plot = new uPlot({
    width: Math.max(300, container.clientWidth - 10), height: 320,
    scales: { x: { time: true } },
    series: [{}, ...keys.map((k, i) => ({ label: k, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true, points: { show: false } }))],
    axes: [axis, axis],
  }, [xs, ...keys.map((k) => ys.get(k))], container);
  plot.keys = keys;
}

function draw() {
  frame = 0;
  const now = (performance.timeOrigin + performance.now()) / 1000;
  trim(now);
  if (rebuild || !plot) { rebuild = false; build(); }
  if (plot) {
    plot.setData([xs, ...plot.keys.map((k) => ys.get(k))], true);
    plot.setScale("x", { min: now - windowSeconds, max: now });
  }
  const chart = root.querySelector("#chart");
  chart.dataset.points = xs.length;
  root.querySelector("#chart-info").textContent = `${xs.length} points in the window, ${ys.size} numeric fields`;
}

function start_(filter) {
  if (unsubscribe) unsubscribe();
  xs = []; ys = new Map(); selected = new Set(); rebuild = true;
  root.querySelector("#chart-fields").replaceChildren(el("legend", { text: "Numeric fields found" }));
  unsubscribe = conn.subscribe(filter, onMessage);
  draw();
}

export function start(section) {
  root = section;
  const form = root.querySelector("#chart-form");
  form.addEventListener("submit", (e) => { e.preventDefault(); start_(currentFilter()); });
  form.window.addEventListener("change", () => { windowSeconds = Number(form.window.value); draw(); });
  windowSeconds = Number(form.window.value);
  window.addEventListener("resize", () => { if (plot) plot.setSize({ width: Math.max(300, root.querySelector("#chart").clientWidth - 10), height: 320 }); });
  window.addEventListener("themechange", () => { rebuild = true; draw(); });
  setInterval(() => { if (!frame) frame = requestAnimationFrame(draw); }, 1000); // slide the window when quiet
  start_(currentFilter());
}
