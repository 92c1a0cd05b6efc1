// Broker: counters and message rates from /api/v1/stats, connected clients and their subscriptions,
// retained topics, and presence from the $aws/events/presence/+/+ lifecycle events.
import { api } from "./api.js";
import { conn } from "./conn.js";
import { decode, el, formatBytes, formatTime } from "./format.js";

const REFRESH_MS = 2000;
const MAX_PRESENCE = 100;
let root;
let previous = null; // {at, broker counters} of the last stats call, for rates

function tile(label, value, hint = "") {
  return el("div", { class: "stat", "data-stat": label }, el("span", { class: "muted", text: label }), el("b", { text: value }),
    hint ? el("span", { class: "field", text: hint }) : null);
}

async function refreshStats() {
  const stats = await api("/api/v1/stats");
  const now = performance.now();
  const b = stats.broker;
  const rate = (key) => (previous && key in b && key in previous.b
    ? ((b[key] - previous.b[key]) / ((now - previous.at) / 1000)).toFixed(1) : "…");
  const tiles = [tile("uptime", `${Math.round(stats.uptime_seconds)} s`)];
  for (const [key, value] of Object.entries(b)) {
    const counter = /received|sent|published|delivered|dropped|bytes|messages/.test(key);
    tiles.push(tile(key.replaceAll("_", " "), key.includes("bytes") ? formatBytes(value) : value,
      counter ? `${rate(key)}/s` : ""));
  }
  root.querySelector("#broker-stats").replaceChildren(...tiles);
  previous = { at: now, b };
}

async function showSubscriptions(clientId) {
  root.querySelector("#broker-sub-client").textContent = clientId;
  const list = root.querySelector("#broker-subs");
  try {
    const subs = await api(`/api/v1/clients/${encodeURIComponent(clientId)}/subscriptions`);
    list.replaceChildren(...subs.subscriptions.map((s) => el("li", { text: `${s.filter}  (QoS ${s.qos})` })));
    if (!subs.subscriptions.length) list.append(el("li", { class: "muted", text: "none" }));
  } catch (err) { list.replaceChildren(el("li", { class: "bad", text: err.message })); }
}

async function refreshClients() {
  const page = await api("/api/v1/clients?status=all&limit=500");
  root.querySelector("#broker-clients").replaceChildren(...page.clients.map((c) => {
    const row = el("tr", { tabindex: "0", "data-client": c.client_id },
      el("td", { text: c.client_id }),
      el("td", { class: c.connected ? "ok" : "muted", text: c.connected ? "connected" : "offline session" }),
      el("td", { text: c.address ? `${c.address}:${c.port}` : "" }),
      el("td", { text: [c.listener, c.protocol].filter(Boolean).join(" ") }),
      el("td", { class: "num", text: c.subscriptions }),
      el("td", { class: "num", text: c.messages_in ?? "" }), el("td", { class: "num", text: c.messages_out ?? "" }));
    const open = () => showSubscriptions(c.client_id);
    row.addEventListener("click", open);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
    return row;
  }));
}

async function refreshRetained() {
  const page = await api("/api/v1/retained?limit=200");
  const list = root.querySelector("#broker-retained");
  list.replaceChildren(...page.retained.map((r) => el("li", { text: `${r.topic}  (${formatBytes(r.payload_size)})` })));
  if (!page.retained.length) list.append(el("li", { class: "muted", text: "none" }));
}

async function refresh() {
  if (root.hidden) return;
  try {
    await Promise.all([refreshStats(), refreshClients(), refreshRetained()]);
  } catch (err) {
    root.querySelector("#broker-stats").replaceChildren(el("p", { class: "bad", text: err.message }));
  }
}

function onPresence(msg) {
  const d = decode(msg.payload);
  const ev = d.kind === "json" ? d.json : {};
  const [, , , kind, ...rest] = msg.topic.split("/"); // $aws/events/presence/{connected|disconnected}/{clientId}
  const text = `${formatTime(ev.timestamp || msg.received)} ${ev.clientId || rest.join("/")} ${kind}`
    + (ev.disconnectReason ? ` (${ev.disconnectReason})` : "") + (ev.ipAddress ? ` from ${ev.ipAddress}` : "");
  const list = root.querySelector("#broker-presence");
  list.prepend(el("li", { class: kind === "connected" ? "ok" : "muted", text }));
  while (list.childElementCount > MAX_PRESENCE) list.lastElementChild.remove();
}

export function start(section) {
  root = section;
  conn.subscribe("$aws/events/presence/+/+", onPresence, 1);
  setInterval(refresh, REFRESH_MS);
}

export function shown() { refresh(); }
