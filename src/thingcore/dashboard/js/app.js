// Start-up: theme, navigation between views (#live, #things, ...), the connection and its status line.
import { conn } from "./conn.js";
import { credentials, saveCredentials } from "./credentials.js";

const VIEWS = ["live", "things", "charts", "rules", "broker"];
const loaded = new Map(); // view name -> module (each view starts the first time it is shown)
const $ = (sel) => document.querySelector(sel);

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function currentTheme() {
  return document.documentElement.dataset.theme
    || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
}

export function showError(text) {
  const box = $("#error");
  box.textContent = text;
  box.hidden = !text;
}

async function show(view) {
  if (!VIEWS.includes(view)) view = "live";
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.dataset.view !== view;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!loaded.has(view)) {
    const mod = await import(`./${view}.js`);
    loaded.set(view, mod);
    mod.start($(`#view-${view}`));
    $(`#view-${view}`).dataset.ready = "1"; // its controls are wired (tests wait for this)
  }
  loaded.get(view).shown?.();
}

const STATUS = {
  connecting: "connecting…", connected: "● live", reconnecting: "reconnecting…",
  offline: "offline", refused: "authentication refused",
};

function setupStatus() {
  conn.addEventListener("state", ({ detail: { state, detail } }) => {
    const status = $("#status");
    status.dataset.state = state;
    status.textContent = STATUS[state] || state;
    if (state === "connected") showError("");
    else if (state === "refused") showError(`The broker refused the dashboard's MQTT login: ${detail}. `
      + "Enter a username and password under Credentials; retrying every 2 s.");
    else if (state === "offline" || state === "reconnecting") showError(`Connection to ${conn.url()} lost`
      + `${detail ? ` (${detail})` : ""}; reconnecting automatically.`);
  });
  conn.addEventListener("suberror", ({ detail }) => showError(`Subscription to ${detail.filter} refused: ${detail.error}`));
}

function setupLogin() {
  const dialog = $("#login");
  const form = $("#login-form");
  $("#login-open").addEventListener("click", () => {
    const c = credentials();
    form.username.value = c.username || "";
    form.password.value = c.password || "";
    form.token.value = c.token || "";
    dialog.showModal();
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue !== "save") return;
    saveCredentials({ username: form.username.value, password: form.password.value, token: form.token.value });
    conn.connect(credentials());
  });
}

function main() {
  window.thingcore = { conn }; // for the browser tests and the latency benchmark
  applyTheme(localStorage.getItem("thingcore.theme"));
  $("#theme").addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    localStorage.setItem("thingcore.theme", next);
    applyTheme(next);
    window.dispatchEvent(new Event("themechange"));
  });
  setupStatus();
  setupLogin();
  conn.connect(credentials());
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1) || "live");
}

main();
