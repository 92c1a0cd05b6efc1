// Rules: each rule's SQL, actions, enabled state and live counters; a SQL playground on /api/v1/rules/test.
import { api } from "./api.js";
import { decode, el, toBase64 } from "./format.js";
import { recent } from "./live.js";

let root;
let timer = 0;
let binarySample = null; // base64 of a binary sample, sent as payloadBase64 while the text box shows its hex

function actionSummary(action) {
  const [kind, params] = Object.entries(action)[0] || ["?", {}];
  const target = params.topic || params.tableName || params.streamName || params.queueUrl || params.url
    || params.bucketName || params.functionArn || params.targetArn || params.metricName || "";
  return `${kind}${target ? ` → ${target}` : ""}`;
}

function counters(m) {
  if (!m) return el("p", { class: "muted", text: "no counters" });
  const row = (label, v) => el("tr", {}, el("td", { text: label }), el("td", { class: "num", text: v ?? "—" }));
  return el("table", { class: "counters" }, el("tbody", {},
    row("received", m.received), row("matched", m.matched), row("errors", m.errors), row("error actions", m.errorActions),
    ...(m.actions || []).map((a) => row(`${a.action} #${a.index}: ok / failed / dropped / queued`,
      `${a.succeeded} / ${a.failed} / ${a.dropped} / ${a.queued}`))));
}

async function load() {
  const list = root.querySelector("#rules-list");
  const status = root.querySelector("#rules-status");
  try {
    const names = [];
    let token = null;
    do {
      const page = await api(`/rules?maxResults=250${token ? `&nextToken=${encodeURIComponent(token)}` : ""}`);
      names.push(...(page.rules || []).map((r) => r.ruleName));
      token = page.nextToken;
    } while (token);
    const rules = await Promise.all(names.map((n) => api(`/rules/${encodeURIComponent(n)}`)));
    list.replaceChildren(...rules.map(({ rule }) => el("article", { class: "card", "data-rule": rule.ruleName },
      el("h3", {}, el("span", { text: rule.ruleName }),
        el("span", { class: `tag ${rule.ruleDisabled ? "bad" : "ok"}`, text: rule.ruleDisabled ? "disabled" : "enabled" })),
      rule.description ? el("p", { class: "muted", text: rule.description }) : null,
      el("pre", { class: "doc", text: rule.sql }),
      el("ul", { class: "plain" }, ...(rule.actions || []).map((a) => el("li", { text: actionSummary(a) })),
        rule.errorAction ? el("li", { class: "muted", text: `error action: ${actionSummary(rule.errorAction)}` }) : null),
      el("div", { class: "metrics" }))));
    if (!rules.length) list.append(el("p", { class: "muted", text: "No rules yet (thingcore rules create …, boto3 or the AWS CLI)." }));
    status.textContent = `${rules.length} rules`; status.className = "muted";
    await refreshMetrics();
  } catch (err) { status.textContent = err.message; status.className = "bad"; }
}

async function refreshMetrics() {
  if (root.hidden) return;
  try {
    const all = await api("/api/v1/rules/metrics");
    for (const m of all.ruleMetrics || []) {
      const box = root.querySelector(`[data-rule="${CSS.escape(m.ruleName)}"] .metrics`);
      if (box) box.replaceChildren(counters(m));
    }
  } catch (err) {
    const status = root.querySelector("#rules-status");
    status.textContent = err.message; status.className = "bad";
  }
}

function useSample() {
  const form = root.querySelector("#sql");
  const msg = recent[recent.length - 1];
  const out = root.querySelector("#sql-result");
  if (!msg) { out.textContent = "No message seen yet: subscribe in the Live view first."; return; }
  form.topic.value = msg.topic;
  const d = decode(msg.payload);
  binarySample = d.kind === "binary" ? { base64: toBase64(msg.payload), shown: `(binary) ${d.hex}` } : null;
  form.payload.value = binarySample ? binarySample.shown : d.text;
}

async function run(e) {
  e.preventDefault();
  const form = root.querySelector("#sql");
  const out = root.querySelector("#sql-result");
  const body = { sql: form.sql.value, awsIotSqlVersion: "2016-03-23", topic: form.topic.value };
  if (binarySample && form.payload.value === binarySample.shown) body.payloadBase64 = binarySample.base64;
  else body.payload = form.payload.value;
  out.textContent = "running…";
  out.className = "result";
  try {
    out.textContent = JSON.stringify(await api("/api/v1/rules/test", { method: "POST", body }), null, 2);
    out.classList.add("ok-result");
  } catch (err) {
    out.textContent = err.message;
    out.classList.add("bad");
  }
}

export function start(section) {
  root = section;
  root.querySelector("#rules-refresh").addEventListener("click", load);
  root.querySelector("#sql-sample").addEventListener("click", useSample);
  root.querySelector("#sql").addEventListener("submit", run);
  load();
  timer = setInterval(refreshMetrics, 2000);
}

export function shown() { if (timer) refreshMetrics(); }
