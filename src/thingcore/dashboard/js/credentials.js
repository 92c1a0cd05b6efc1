// Credentials typed into the login form, kept in sessionStorage (gone when the tab closes).
const KEY = "thingcore.credentials";

export function credentials() {
  try { return JSON.parse(sessionStorage.getItem(KEY)) || {}; } catch { return {}; }
}

export function saveCredentials(values) {
  sessionStorage.setItem(KEY, JSON.stringify(values));
}
