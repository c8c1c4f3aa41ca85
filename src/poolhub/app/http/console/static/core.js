// Pool Hub console: shared helpers, the API client, sign-in and the hash router.
// Everything is built with DOM calls (never innerHTML), so no value from the API can become markup.
"use strict";

const PH = (window.PH = {
  pages: {},
  timers: [],
  features: null,
});

const TOKEN_KEY = "poolhub.operatorToken";

PH.h = function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
};
const h = PH.h;

PH.token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}
PH.ApiError = ApiError;

// Every call carries the operator token as a bearer header; a 401 means it no longer works: sign out.
PH.api = async function api(path, { method = "GET", body, headers = {}, raw = false } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "omit" };
  const token = PH.token();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (raw) return response;
  let payload = null;
  const text = await response.text();
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch (_) {
      payload = text;
    }
  }
  if (response.status === 401 && token) {
    PH.signOut("The hub refused the operator token (401). Sign in again.");
    throw new ApiError(401, "signed out");
  }
  if (!response.ok) {
    const detail = payload && payload.detail ? payload.detail : `HTTP ${response.status}`;
    throw new ApiError(response.status, detail);
  }
  return { body: payload, total: Number(response.headers.get("X-Total-Count") || NaN) };
};

// Formatting ------------------------------------------------------------------------------------

PH.fmt = {
  int: (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US")),
  num: (n, digits = 1) =>
    n === null || n === undefined
      ? "—"
      : Number(n).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }),
  pct: (n, digits = 1) => (n === null || n === undefined ? "—" : `${PH.fmt.num(n, digits)} %`),
  // Four decimals everywhere: usage is billed in small amounts, and one precision keeps columns comparable.
  money: (s, currency = "USD") =>
    s === null || s === undefined
      ? "—"
      : `${Number(s).toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 })} ${currency}`,
  qty: (s) => (s === null || s === undefined ? "—" : Number(s).toLocaleString("en-US", { maximumFractionDigits: 4 })),
  time: (iso) => {
    if (!iso) return "—";
    const d = new Date(iso);
    return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  },
  ago: (iso) => {
    if (!iso) return "never";
    const sec = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    return `${PH.fmt.duration(sec)} ago`;
  },
  duration: (sec) => {
    if (sec === null || sec === undefined) return "—";
    sec = Math.round(sec);
    if (sec < 60) return `${sec} s`;
    const m = Math.floor(sec / 60);
    if (m < 60) return `${m} min`;
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return `${hrs} h ${m % 60} min`;
    return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
  },
};

// A coloured dot is never alone: the word beside it says the same for anyone who cannot see colour.
PH.badge = (word, tone) => h("span", { class: `badge tone-${tone || word}` }, h("span", { class: "dot", "aria-hidden": "true" }), word);

PH.SEVERITY_TONE = { low: "low", medium: "medium", high: "high", critical: "critical" };
PH.STATUS_TONE = { healthy: "ok", degraded: "warn", critical: "bad", watch: "warn", scale_up: "bad", scale_down: "info" };
PH.VIOLATION_WORDS = {
  uptime_pct: "uptime",
  response_time_ms: "p95 response time",
  completion_rate_pct: "completion rate",
  capacity_availability_pct: "pool free capacity",
  capacity_forecast: "capacity forecast",
};

PH.table = (columns, rows, { caption, empty } = {}) => {
  if (!rows.length && empty) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(row)))))),
    ),
  );
};

PH.pager = (offset, limit, total, go) => {
  if (!total) return document.createDocumentFragment();
  const from = total ? offset + 1 : 0;
  const to = Math.min(offset + limit, total);
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", class: "secondary", disabled: offset <= 0, onclick: () => go(Math.max(0, offset - limit)) }, "← Previous"),
    h("span", { class: "pager-text", "aria-live": "polite" }, `${from}–${to} of ${PH.fmt.int(total)}`),
    h("button", { type: "button", class: "secondary", disabled: to >= total, onclick: () => go(offset + limit) }, "Next →"),
  );
};

PH.field = (label, control) => h("label", { class: "field" }, h("span", {}, label), control);
PH.select = (name, options, value) =>
  h("select", { name }, options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(value ?? "") }, text)));

PH.message = (text, tone = "info") => h("p", { class: `message tone-${tone}`, role: tone === "bad" ? "alert" : "status" }, text);

// Routing: #/page/arg?query. Each page is PH.pages[name](view, args, query) and may add timers.

PH.route = () => {
  const hash = location.hash.replace(/^#\/?/, "") || "overview";
  const [path, query = ""] = hash.split("?");
  const [name, ...args] = path.split("/").map(decodeURIComponent);
  return { name, args, query: new URLSearchParams(query) };
};

PH.go = (name, args = [], query = null) => {
  const q = query && [...query].length ? `?${query}` : "";
  location.hash = `#/${[name, ...args.map(encodeURIComponent)].join("/")}${q}`;
};

PH.clearTimers = () => {
  for (const t of PH.timers) {
    clearInterval(t);
    clearTimeout(t);
  }
  PH.timers = [];
};

PH.render = async () => {
  PH.clearTimers();
  if (PH.resetCharts) PH.resetCharts();
  const view = document.getElementById("view");
  const signin = document.getElementById("signin");
  if (!PH.token()) {
    view.replaceChildren();
    signin.hidden = false;
    document.getElementById("nav").hidden = true;
    document.getElementById("signout").hidden = true;
    document.getElementById("token").focus();
    return;
  }
  signin.hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  const route = PH.route();
  const page = PH.pages[route.name] || PH.pages.overview;
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.dataset.page === (PH.pages[route.name] ? route.name : "overview");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const content = h("div", { class: "page" });
  view.replaceChildren(content);
  try {
    if (!PH.features) PH.features = (await PH.api("/console/api/features")).body;
    await page(content, route.args, route.query);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      content.append(PH.message(`Could not load this page: ${err.message}`, "bad"));
    }
  }
};

PH.signOut = (why) => {
  sessionStorage.removeItem(TOKEN_KEY);
  PH.features = null;
  PH.clearTimers();
  document.getElementById("signin-error").textContent = why || "";
  PH.render();
};

PH.signIn = async (token) => {
  const response = await fetch("/console/api/session", {
    headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
    credentials: "omit",
  });
  if (response.ok) {
    sessionStorage.setItem(TOKEN_KEY, token);
    return null;
  }
  if (response.status === 401 || response.status === 403) return "That token was refused: it is not the operator token.";
  if (response.status === 429) return "Too many refused tokens from this address: wait a minute and try again.";
  return `The hub answered HTTP ${response.status}; try again.`;
};
