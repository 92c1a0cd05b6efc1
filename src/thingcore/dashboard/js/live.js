// Live messages: any filter, newest first, pretty JSON / text / hex+base64, per-topic rates, pause, publish.
// Messages are queued as they arrive and drawn once per animation frame, so a burst costs one layout.
import { conn } from "./conn.js";
import { decode, el, formatBytes, formatTime } from "./format.js";

const MAX_SHOWN = 100; // each drawn frame lays out the whole list: 300 items tripled the time a frame holds the page
const MAX_PER_FRAME = 20; // past ~1 200 msg/s nobody reads each one: the newest are drawn, all are counted
const RATE_WINDOW_MS = 5000;
export const recent = []; // the latest messages (any filter), for the SQL playground's sample
let pending = [];
let paused = false;
let frame = 0;
let total = 0;
let unsubscribe = null;
const topics = new Map(); // topic -> {total, stamps: []}
let root;

function item(msg) {
  const d = decode(msg.payload);
  const props = msg.properties;
  const meta = el("div", { class: "meta" },
    el("span", { class: "topic", text: msg.topic }),
    el("span", { text: formatTime(msg.received) }),
    el("span", { class: "tag", text: `QoS ${msg.qos}` }),
    msg.retain ? el("span", { class: "tag", text: "retained" }) : null,
    el("span", { class: "tag", text: d.kind }),
    el("span", { text: formatBytes(msg.payload.length) }),
    props.contentType ? el("span", { text: props.contentType }) : null);
  const body = d.kind === "binary"
    ? el("div", {}, el("pre", { text: d.hex }), el("pre", { class: "muted", text: `base64 ${d.base64}` }))
    : el("pre", { text: d.pretty });
  return el("li", { "data-topic": msg.topic }, meta, body);
}

function draw() {
  frame = 0;
  if (paused || pending.length === 0) return;
  const batch = pending.length > MAX_PER_FRAME ? pending.slice(-MAX_PER_FRAME) : pending;
  pending = [];
  const list = root.querySelector("#live-list");
  const fragment = document.createDocumentFragment();
  for (let i = batch.length - 1; i >= 0; i--) fragment.append(item(batch[i]));
  list.prepend(fragment);
  while (list.childElementCount > MAX_SHOWN) list.lastElementChild.remove();
  root.querySelector("#live-count").textContent = `${total} message${total === 1 ? "" : "s"}`;
  const probe = window.thingcoreProbe; // set by benchmarks/dashboard_latency.py: time of the DOM update
  if (probe) { const now = performance.timeOrigin + performance.now(); for (const m of batch) probe(m, now); }
}

function onMessage(msg) {
  total++;
  recent.push(msg);
  if (recent.length > 50) recent.shift();
  let t = topics.get(msg.topic);
  if (!t) { t = { total: 0, stamps: [] }; topics.set(msg.topic, t); }
  t.total++;
  t.stamps.push(msg.received);
  pending.push(msg);
  if (pending.length > MAX_SHOWN * 2) pending = pending.slice(-MAX_SHOWN);
  if (!frame && !paused) frame = requestAnimationFrame(draw);
}

function drawRates() {
  const now = performance.timeOrigin + performance.now();
  root.querySelector("#live-count").textContent = `${total} message${total === 1 ? "" : "s"}${paused ? " (paused)" : ""}`;
  const rows = [];
  for (const [topic, t] of topics) {
    while (t.stamps.length && t.stamps[0] < now - RATE_WINDOW_MS) t.stamps.shift();
    rows.push([topic, t.stamps.length / (RATE_WINDOW_MS / 1000), t.total]);
  }
  rows.sort((a, b) => b[1] - a[1] || b[2] - a[2]);
  const body = root.querySelector("#live-rates");
  body.replaceChildren(...rows.slice(0, 50).map(([topic, rate, n]) => el("tr", {},
    el("td", { text: topic }), el("td", { class: "num", text: rate.toFixed(1) }), el("td", { class: "num", text: n }))));
}

function subscribe(filter) {
  if (unsubscribe) unsubscribe();
  unsubscribe = conn.subscribe(filter, onMessage);
  const url = new URL(location.href);
  url.searchParams.set("filter", filter);
  history.replaceState(null, "", url);
}

export function start(section) {
  root = section;
  const form = root.querySelector("#live-sub");
  const initial = new URLSearchParams(location.search).get("filter");
  if (initial) form.filter.value = initial;
  form.addEventListener("submit", (e) => { e.preventDefault(); subscribe(form.filter.value.trim()); });
  const pause = root.querySelector("#live-pause");
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused && !frame) frame = requestAnimationFrame(draw);
  });
  root.querySelector("#live-clear").addEventListener("click", () => {
    root.querySelector("#live-list").replaceChildren();
    pending = [];
    topics.clear();
    total = 0;
    root.querySelector("#live-count").textContent = "0 messages";
    drawRates();
  });
  const pub = root.querySelector("#pub");
  pub.addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = root.querySelector("#pub-result");
    try {
      await conn.publish(pub.topic.value, pub.payload.value, { qos: Number(pub.qos.value), retain: pub.retain.checked });
      out.textContent = `published to ${pub.topic.value} at ${formatTime(Date.now())}`;
      out.className = "ok";
    } catch (err) {
      out.textContent = `not published: ${err.message}`;
      out.className = "bad";
    }
  });
  setInterval(drawRates, 1000);
  subscribe(form.filter.value.trim());
}
