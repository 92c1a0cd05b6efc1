// Payloads as people read them: pretty JSON, plain text, or binary as hex and base64.
const utf8 = new TextDecoder("utf-8", { fatal: true });
const MAX_HEX = 512;

export function decode(bytes) {
  let text = null;
  try { text = utf8.decode(bytes); } catch { /* not UTF-8: binary */ }
  if (text !== null && !/[\u0000-\u0008\u000e-\u001f]/.test(text)) {
    const trimmed = text.trim();
    if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
      try { const json = JSON.parse(text); return { kind: "json", json, text, pretty: JSON.stringify(json, null, 2) }; }
      catch { /* text that looks like JSON */ }
    }
    if (trimmed !== "" && !Number.isNaN(Number(trimmed))) return { kind: "json", json: Number(trimmed), text, pretty: trimmed };
    return { kind: "text", text, pretty: text };
  }
  const head = bytes.subarray(0, MAX_HEX);
  const hex = Array.from(head, (b) => b.toString(16).padStart(2, "0")).join(" ") + (bytes.length > MAX_HEX ? " …" : "");
  return { kind: "binary", text: null, hex, base64: toBase64(bytes), pretty: hex };
}

export function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function formatTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

/** Shadow timestamps are whole epoch seconds: shown without milliseconds. */
export function formatSeconds(s) {
  return new Date(s * 1000).toLocaleTimeString([], { hour12: false });
}

export function formatBytes(n) {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(1)} MB`;
}

/** Build an element: el("li", {class: "x"}, child, "text", ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
