// thingcore's HTTP APIs from the page: same origin, admin token (if any) as a bearer token, errors as one line.
import { credentials } from "./credentials.js";

export class ApiError extends Error {}

export async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  const { token } = credentials();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(`${method} ${path}: server unreachable (${err.message})`);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!resp.ok) {
    const kind = resp.headers.get("x-amzn-ErrorType") || resp.status;
    const hint = resp.status === 401 || resp.status === 403 ? " — set the admin token under Credentials" : "";
    throw new ApiError(`${method} ${path}: ${kind}: ${(data && data.message) || resp.statusText}${hint}`);
  }
  return data;
}
