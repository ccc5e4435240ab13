// The one way pages talk to the API: same-origin fetch with the session and CSRF header, JSON
// in and out, and every failure turned into an ApiError that showError() puts on the page.

export class ApiError extends Error {
  constructor(status, code, detail, body) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const csrf = () => document.body.dataset.csrf || "";

export async function api(path, {method = "GET", body, signal, raw = false} = {}) {
  const headers = {Accept: "application/json"};
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrf();
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, {method, headers, body: payload, credentials: "same-origin", signal});
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "The server could not be reached. Check your connection and try again.");
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (error) {
    data = null;
  }
  if (!response.ok) {
    const code = data && data.error ? data.error : `http_${response.status}`;
    let detail = data && data.detail ? data.detail : `The server answered ${response.status} ${response.statusText}.`;
    if (response.status === 404 && !(data && data.error)) detail = `${path} is not available on this server.`;
    throw new ApiError(response.status, code, detail, data);
  }
  return data;
}

// Every page of a cursor-paginated list, following `next` until done (or `limit` items).
export async function* pages(path, {signal} = {}) {
  let url = path;
  while (url) {
    const data = await api(url, {signal});
    yield data;
    url = data.next || null;
  }
}

const alerts = () => document.getElementById("alerts");

export function showError(error, context = "") {
  if (error && error.name === "AbortError") return;
  // An answer of the API is shown to the person; anything else is also a bug worth the console.
  if (error instanceof ApiError) console.warn(error.message);
  else console.error(error);
  const box = alerts();
  if (!box) return;
  const item = document.createElement("div");
  item.className = "alert error";
  const text = document.createElement("span");
  const what = error instanceof ApiError ? error.message : (error && error.message) || String(error);
  text.textContent = context ? `${context}: ${what}` : what;
  const close = button("Dismiss", () => item.remove(), "dismiss");
  close.setAttribute("aria-label", "Dismiss this message");
  item.append(text, close);
  box.append(item);
}

export function notify(message) {
  const box = alerts();
  if (!box) return;
  const item = document.createElement("div");
  item.className = "alert info";
  item.textContent = message;
  box.append(item);
  setTimeout(() => item.remove(), 4000);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

export function button(label, onclick, cls = "") {
  return el("button", {type: "button", class: cls, onclick}, label);
}

export function human(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let value = Number(bytes) || 0;
  while (value >= 1000 && i < units.length - 1) {
    value /= 1000;
    i++;
  }
  return `${i ? value.toFixed(1) : value} ${units[i]}`;
}

// taken_at is ISO 8601 in the local time of capture ("2024-05-12T14:03:00+02:00"): its
// date and clock are read as written, never converted to the browser's zone.
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
  "October", "November", "December"];
const WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

export function monthLabel(key) {
  const [year, month] = key.split("-").map(Number);
  return `${MONTHS[month - 1]} ${year}`;
}

export function dayLabel(key) {
  const [year, month, day] = key.split("-").map(Number);
  const weekday = WEEKDAYS[new Date(Date.UTC(year, month - 1, day)).getUTCDay()];
  return `${weekday} ${day} ${MONTHS[month - 1]} ${year}`;
}

export function whenLabel(iso) {
  if (!iso) return "";
  return `${dayLabel(iso.slice(0, 10))}, ${iso.slice(11, 16)}`;
}

export function kindLabel(kind) {
  return {image: "Photo", video: "Video", audio: "Audio", document: "Document"}[kind] || "File";
}
