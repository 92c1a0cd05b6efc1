// Things: the registry and every shadow (classic and named), kept live from the shadow service's
// /update/documents and /delete/accepted topics; desired state edited in place is sent as a shadow update.
import { api } from "./api.js";
import { conn } from "./conn.js";
import { decode, el, formatSeconds } from "./format.js";

const TOPICS = [
  "$aws/things/+/shadow/update/documents", "$aws/things/+/shadow/name/+/update/documents",
  "$aws/things/+/shadow/delete/accepted", "$aws/things/+/shadow/name/+/delete/accepted",
  "$aws/things/+/shadow/update/rejected", "$aws/things/+/shadow/name/+/update/rejected",
];
const CLASSIC = "";
const things = new Map(); // thing name -> {registry, shadows: Map(shadow name -> document)}
const dirty = new Set();
const tokens = new Map(); // clientToken of our own updates -> status element
let frame = 0;
let root;

function thing(name) {
  let t = things.get(name);
  if (!t) { t = { registry: null, shadows: new Map() }; things.set(name, t); }
  return t;
}

function changed(name) {
  dirty.add(name);
  if (!frame) frame = requestAnimationFrame(render);
}

/** AWS's delta: what desired says that reported does not (objects compared field by field). */
export function delta(desired, reported) {
  if (!desired || typeof desired !== "object") return undefined;
  const out = {};
  for (const [k, v] of Object.entries(desired)) {
    const r = reported ? reported[k] : undefined;
    if (v && typeof v === "object" && !Array.isArray(v) && r && typeof r === "object" && !Array.isArray(r)) {
      const sub = delta(v, r);
      if (sub) out[k] = sub;
    } else if (JSON.stringify(v) !== JSON.stringify(r)) out[k] = v;
  }
  return Object.keys(out).length ? out : undefined;
}

function leaves(state, meta, path = [], out = []) {
  for (const [k, v] of Object.entries(state || {})) {
    const m = meta ? meta[k] : undefined;
    if (v && typeof v === "object" && !Array.isArray(v)) leaves(v, m, [...path, k], out);
    else out.push({ path: [...path, k].join("."), value: v, at: m && m.timestamp });
  }
  return out;
}

function section(title, state, meta, cls) {
  const rows = leaves(state, meta);
  return el("div", { class: cls },
    el("h4", { text: title }),
    rows.length === 0 ? el("p", { class: "muted", text: "—" })
      : el("table", {}, el("tbody", {}, ...rows.map((r) => el("tr", { "data-field": r.path },
        el("td", { text: r.path }), el("td", { text: JSON.stringify(r.value) }),
        el("td", { class: "field", text: r.at ? formatSeconds(r.at) : "" }))))));
}

function updateTopic(name, shadow) {
  return `$aws/things/${name}/shadow${shadow ? `/name/${shadow}` : ""}/update`;
}

function editor(name, shadow, doc) {
  const status = el("output", { class: "muted" });
  const area = el("textarea", { rows: 4, spellcheck: "false", "aria-label": `desired state of ${name} ${shadow || "classic"}` });
  area.value = JSON.stringify(doc.state?.desired || {}, null, 2);
  area.addEventListener("input", () => { area.dataset.edited = "1"; });
  const send = async () => {
    let desired;
    try { desired = JSON.parse(area.value); } catch (err) { status.textContent = `not JSON: ${err.message}`; status.className = "bad"; return; }
    if (!desired || typeof desired !== "object" || Array.isArray(desired)) {
      status.textContent = "desired must be a JSON object"; status.className = "bad"; return;
    }
    const current = things.get(name)?.shadows.get(shadow)?.state?.desired || {};
    for (const key of Object.keys(current)) if (!(key in desired)) desired[key] = null; // removed keys are deleted
    const clientToken = `dashboard-${Math.random().toString(16).slice(2, 12)}`;
    tokens.set(clientToken, status);
    try {
      await conn.publish(updateTopic(name, shadow), JSON.stringify({ state: { desired }, clientToken }), { qos: 1 });
      status.textContent = "sent…"; status.className = "muted";
      delete area.dataset.edited;
    } catch (err) { status.textContent = `not sent: ${err.message}`; status.className = "bad"; }
  };
  area.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(); });
  return el("details", { class: "editor" }, el("summary", { text: "Edit desired" }),
    el("div", { class: "stack" }, area,
      el("div", { class: "bar" }, el("button", { type: "button", onclick: send, text: "Update desired" }),
        el("span", { class: "muted", text: "Ctrl+Enter" }), status)));
}

function shadowBlock(name, shadow, doc, old) {
  const state = doc.state || {};
  const d = delta(state.desired, state.reported);
  const view = el("div", { class: "view" },
    el("div", { class: "state-grid" },
      section("desired", state.desired, doc.metadata?.desired, "desired"),
      section("reported", state.reported, doc.metadata?.reported, "reported"),
      section("delta", d, doc.metadata?.desired, "delta")));
  let block = old;
  if (!block) {
    block = el("div", { class: "shadow", "data-shadow": shadow || "classic" },
      el("h4", {}, el("span", { class: "name" }), " ", el("span", { class: "tag version" }), " ", el("span", { class: "field when" })),
      el("div", { class: "view" }), editor(name, shadow, doc));
  }
  block.querySelector(".name").textContent = shadow ? `named shadow "${shadow}"` : "classic shadow";
  block.querySelector(".version").textContent = `version ${doc.version ?? "?"}`;
  block.querySelector(".when").textContent = doc.timestamp ? `updated ${formatSeconds(doc.timestamp)}` : "";
  block.querySelector(".view").replaceWith(view);
  const area = block.querySelector("textarea");
  if (!area.dataset.edited && document.activeElement !== area) area.value = JSON.stringify(state.desired || {}, null, 2);
  if (old) { view.classList.add("flash"); }
  return block;
}

function card(name, t, old) {
  const c = old || el("article", { class: "card", "data-thing": name },
    el("h3", {}, el("span", { text: name }), el("span", { class: "tag type" }), el("span", { class: "muted attrs" })),
    el("div", { class: "shadows" }));
  const reg = t.registry;
  c.querySelector(".type").textContent = reg ? (reg.thingTypeName || "no type") : "not in the registry";
  c.querySelector(".attrs").textContent = reg && reg.attributes
    ? Object.entries(reg.attributes).map(([k, v]) => `${k}=${v}`).join(" ") : "";
  const box = c.querySelector(".shadows");
  const blocks = new Map([...box.children].map((b) => [b.dataset.shadow, b]));
  const names = [...t.shadows.keys()].sort();
  const ordered = names.map((s) => shadowBlock(name, s, t.shadows.get(s), blocks.get(s || "classic")));
  box.replaceChildren(...ordered);
  if (!ordered.length) box.append(el("p", { class: "muted", text: "no shadow yet" }));
  return c;
}

function render() {
  frame = 0;
  const list = root.querySelector("#things-list");
  const cards = new Map([...list.children].map((c) => [c.dataset.thing, c]));
  for (const name of dirty) {
    const t = things.get(name);
    const old = cards.get(name);
    if (!t) { old?.remove(); continue; }
    const c = card(name, t, old);
    if (!old) {
      const after = [...list.children].find((x) => x.dataset.thing > name);
      list.insertBefore(c, after || null);
    }
  }
  dirty.clear();
}

function parse(topic) {
  const p = topic.split("/");
  return p[4] === "name" ? { name: p[2], shadow: p[5], op: p.slice(6).join("/") } : { name: p[2], shadow: CLASSIC, op: p.slice(4).join("/") };
}

function onMessage(msg) {
  const { name, shadow, op } = parse(msg.topic);
  const d = decode(msg.payload);
  if (d.kind !== "json") return;
  const body = d.json;
  if (op === "update/documents") {
    const doc = { ...body.current, timestamp: body.timestamp };
    const t = thing(name);
    const have = t.shadows.get(shadow);
    if (!have || (have.version ?? -1) <= (doc.version ?? 0)) t.shadows.set(shadow, doc);
    const status = body.clientToken && tokens.get(body.clientToken);
    if (status) { status.textContent = `accepted, version ${doc.version}`; status.className = "ok"; tokens.delete(body.clientToken); }
    changed(name);
  } else if (op === "delete/accepted") {
    things.get(name)?.shadows.delete(shadow);
    changed(name);
  } else if (op === "update/rejected") {
    const status = body.clientToken && tokens.get(body.clientToken);
    if (status) { status.textContent = `rejected: ${body.code} ${body.message}`; status.className = "bad"; tokens.delete(body.clientToken); }
  }
}

async function loadShadow(name, shadow) {
  try {
    const doc = await api(`/things/${encodeURIComponent(name)}/shadow${shadow ? `?name=${encodeURIComponent(shadow)}` : ""}`);
    const t = thing(name);
    const have = t.shadows.get(shadow);
    if (!have || (have.version ?? -1) < doc.version) t.shadows.set(shadow, doc);
  } catch { /* no such shadow (404) */ }
}

async function load() {
  const status = root.querySelector("#things-status");
  try {
    let token = null;
    const names = [];
    do {
      const page = await api(`/things?maxResults=250${token ? `&nextToken=${encodeURIComponent(token)}` : ""}`);
      for (const reg of page.things || []) { thing(reg.thingName).registry = reg; names.push(reg.thingName); }
      token = page.nextToken;
    } while (token);
    await Promise.all(names.map(async (name) => {
      await loadShadow(name, CLASSIC);
      try {
        const named = await api(`/api/things/shadow/ListNamedShadowsForThing/${encodeURIComponent(name)}?pageSize=100`);
        await Promise.all((named.results || []).map((s) => loadShadow(name, s)));
      } catch { /* listed below as an error only if the registry call failed */ }
      changed(name);
    }));
    status.textContent = `${names.length} in the registry`;
    status.className = "muted";
  } catch (err) {
    status.textContent = err.message;
    status.className = "bad";
  }
}

export function start(section) {
  root = section;
  for (const topic of TOPICS) conn.subscribe(topic, onMessage, 1);
  root.querySelector("#things-refresh").addEventListener("click", load);
  load();
}
