// Trailhub console, core: the API client, DOM helpers, formatting, form errors, timers.
// Every value from the API is inserted with textContent (through `el`), never as HTML.
"use strict";

const TH = {
  token: localStorage.getItem("trailhub.token") || "",
  // Bumped on every route change: a load that finishes for an older view writes nothing.
  gen: 0,
  timers: [],
  zone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
  ACTIONS: ["create", "read", "update", "delete", "login", "logout", "export", "import", "grant", "revoke", "execute", "other"],
  CATEGORIES: ["authentication", "authorization", "user_management", "configuration", "data_access", "data_change", "system", "other"],
  OUTCOMES: ["success", "failure", "unknown"],
  // The timeline's filter parameters, as GET /api/v1/events names them.
  FILTERS: ["since", "until", "q", "actor", "action", "category", "outcome", "event_type", "integration", "connector", "target", "ip"],
  COLORS: ["#2f5bd3", "#e07b39", "#3aa17e", "#c23b3b", "#8a5cc7", "#c9a227", "#3b9ec2", "#d45d9b", "#6b7385", "#7fa33a", "#a0522d", "#1d2330"],
  views: {},
};

TH.$ = (sel, root) => (root || document).querySelector(sel);
TH.$$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

// el("td", {class: "x", dataset: {id: 1}, title: "t"}, "text", childNode, ...)
TH.el = function (tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "dataset") for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = String(dv);
      else if (k === "text") e.textContent = String(v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v === true) e.setAttribute(k, "");
      else e.setAttribute(k, String(v));
    }
  }
  for (const c of children) TH.append(e, c);
  return e;
};

TH.append = function (parent, c) {
  if (c === undefined || c === null || c === false) return;
  if (Array.isArray(c)) { for (const x of c) TH.append(parent, x); return; }
  parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
};

// The clone of a <template> of index.html.
TH.template = (id) => document.getElementById(id).content.cloneNode(true);

// --- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}
TH.ApiError = ApiError;

TH.headers = (extra) => Object.assign({ Authorization: "Bearer " + TH.token }, extra || {});

// GET/POST/PATCH/DELETE a JSON endpoint; throws ApiError with the hub's code, message and field.
TH.api = async function (path, options) {
  const opts = options || {};
  const init = { method: opts.method || "GET", headers: TH.headers() };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", "The hub did not answer (" + e.message + "). Is it running?");
  }
  if (resp.status === 401) {
    TH.signOut("The hub refused this token (it may have been revoked). Sign in again.");
    throw new ApiError(401, "unauthorized", "unauthorized");
  }
  if (resp.status === 204) return null;
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = (body && body.error) || {};
    let message = err.message || resp.statusText || "HTTP " + resp.status;
    if (resp.status === 403) message = "Not allowed for this token: " + message;
    throw new ApiError(resp.status, err.code || "http_" + resp.status, message, err.field);
  }
  return body;
};

// Downloads an authenticated file through fetch + blob (a plain link cannot carry the token).
TH.download = async function (path, fallbackName) {
  const resp = await fetch(path, { headers: TH.headers() });
  if (!resp.ok) {
    const body = await resp.json().catch(() => null);
    const msg = (body && body.error && body.error.message) || resp.statusText;
    throw new ApiError(resp.status, "download", msg);
  }
  const disposition = resp.headers.get("Content-Disposition") || "";
  const m = /filename="?([^";]+)"?/.exec(disposition);
  const name = m ? m[1] : fallbackName;
  const blob = await resp.blob();
  const a = TH.el("a", { href: URL.createObjectURL(blob), download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  return { name, bytes: blob.size };
};

// --- formatting ----------------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat();
TH.num = (n) => (n === null || n === undefined ? "—" : numberFormat.format(n));

TH.bytes = function (n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
};

TH.pct = (share) => (share * 100).toFixed(share < 0.1 ? 1 : 0) + " %";

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const shortTimeFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

TH.localTime = (iso) => (iso ? timeFormat.format(new Date(iso)) : "—");
TH.shortTime = (iso) => (iso ? shortTimeFormat.format(new Date(iso)) : "—");

// A <time> in the viewer's zone, with the UTC value (to the microsecond, as stored) on hover:
// `2024-05-01 10:00:00.000000 UTC`.
TH.time = function (iso, short) {
  if (!iso) return TH.el("span", { class: "muted", text: "—" });
  const utc = String(iso).replace("T", " ").replace(/Z$/, " UTC");
  return TH.el("time", { datetime: iso, title: utc }, short ? TH.shortTime(iso) : TH.localTime(iso));
};

TH.ago = function (iso) {
  if (!iso) return "never";
  const secs = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  return TH.duration(Math.abs(secs)) + (secs >= 0 ? " ago" : " from now");
};

TH.duration = function (secs) {
  if (secs === null || secs === undefined) return "—";
  if (secs < 60) return secs + " s";
  if (secs < 3600) return Math.round(secs / 60) + " min";
  if (secs < 86400) return (secs / 3600).toFixed(secs < 36000 ? 1 : 0) + " h";
  return (secs / 86400).toFixed(secs < 864000 ? 1 : 0) + " d";
};

// The zone's offset now, e.g. "UTC+02:00".
TH.zoneOffset = function () {
  const mins = -new Date().getTimezoneOffset();
  const sign = mins >= 0 ? "+" : "-";
  const a = Math.abs(mins);
  return "UTC" + sign + String(Math.floor(a / 60)).padStart(2, "0") + ":" + String(a % 60).padStart(2, "0");
};

TH.actorLabel = (a) => (a ? a.name || a.email || a.id : "—");

TH.badge = (text, kind) => TH.el("span", { class: "badge " + (kind || String(text).replace(/[^a-z_]/gi, "")) , text });

// --- links and routes ------------------------------------------------------------------------

TH.go = (hash) => { if (location.hash !== hash) location.hash = hash; else TH.route(); };
TH.link = (hash, text, attrs) => TH.el("a", Object.assign({ href: hash }, attrs || {}), text);
TH.timelineLink = (params, text) => TH.link("#/timeline?" + new URLSearchParams(params), text);
TH.actorLink = (id, text) => TH.link("#/actors/" + encodeURIComponent(id), text || id, { class: "actor" });

// --- feedback -------------------------------------------------------------------------------

TH.flash = function (message, kind) {
  const box = TH.$("#flash");
  const item = TH.el("div", { class: "flash " + (kind || "info"), role: kind === "error" ? "alert" : "status" }, message);
  const close = TH.el("button", { type: "button", class: "link", "aria-label": "dismiss", onclick: () => item.remove() }, "×");
  item.append(close);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 12000 : 5000);
};

TH.loading = (text) => TH.el("p", { class: "loading" }, text || "Loading…");
TH.empty = (text, hint) => TH.el("div", { class: "empty" }, TH.el("p", null, text), hint ? TH.el("p", { class: "muted" }, hint) : null);
TH.errorBox = (err, retry) => TH.el("div", { class: "error-box", role: "alert" },
  TH.el("p", null, err.message || String(err)),
  retry ? TH.el("button", { type: "button", onclick: retry }, "Try again") : null);

// Replaces a container's content.
TH.fill = (container, ...children) => { container.replaceChildren(); for (const c of children) TH.append(container, c); };

// --- forms ----------------------------------------------------------------------------------

TH.clearErrors = function (form) {
  for (const e of TH.$$("[data-error-for]", form)) { e.textContent = ""; e.hidden = true; }
  for (const e of TH.$$(".invalid", form)) e.classList.remove("invalid");
  const general = TH.$("[data-testid=form-error]", form);
  if (general) { general.textContent = ""; general.hidden = true; }
};

// Shows an API error next to the field it names (`mapField` turns the API's field path into
// the form's field name), otherwise in the form's [data-testid=form-error].
TH.showError = function (form, err, mapField) {
  const field = err.field ? (mapField ? mapField(err.field) : err.field) : null;
  const slot = field ? TH.$(`[data-error-for="${CSS.escape(field)}"]`, form) : null;
  if (slot) {
    // the hub's message starts with the field's name; beside the field it is said already
    const prefix = "`" + err.field + "`: ";
    slot.textContent = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    slot.hidden = false;
    const input = form.elements.namedItem(field);
    if (input && input.classList) { input.classList.add("invalid"); input.focus(); }
    else if (input && input.length && input[0].classList) input[0].classList.add("invalid");
    return;
  }
  const general = TH.$("[data-testid=form-error]", form);
  if (general) { general.textContent = err.message; general.hidden = false; } else TH.flash(err.message, "error");
};

TH.fieldError = function (form, field, message) {
  TH.showError(form, new ApiError(400, "invalid", message, field));
};

// Disables the form's buttons while `work` runs.
TH.busy = async function (form, work) {
  const buttons = TH.$$("button", form);
  for (const b of buttons) b.disabled = true;
  form.classList.add("busy");
  try { return await work(); } finally {
    for (const b of buttons) b.disabled = false;
    form.classList.remove("busy");
  }
};

TH.options = function (select, values, blank) {
  select.replaceChildren();
  if (blank !== undefined) select.append(TH.el("option", { value: "" }, blank));
  for (const v of values) {
    if (typeof v === "string") select.append(TH.el("option", { value: v }, v));
    else select.append(TH.el("option", { value: v.value }, v.label));
  }
};

// The form's non-empty values of these names, trimmed.
TH.values = function (form, names) {
  const out = {};
  for (const n of names) {
    const input = form.elements.namedItem(n);
    if (!input) continue;
    const v = String(input.value || "").trim();
    if (v) out[n] = v;
  }
  return out;
};

// --- timers ---------------------------------------------------------------------------------

// Runs `fn` every `ms` while the current view is open (a hidden tab: every 4th time).
TH.every = function (ms, fn) {
  const gen = TH.gen;
  let ticks = 0;
  const id = setInterval(() => {
    if (gen !== TH.gen) { clearInterval(id); return; }
    ticks++;
    if (document.visibilityState !== "hidden" || ticks % 4 === 0) fn();
  }, ms);
  TH.timers.push(id);
};

TH.stopTimers = function () {
  for (const id of TH.timers) clearInterval(id);
  TH.timers = [];
};

// A guard for async loads: `live()` is false once the user went elsewhere.
TH.liveGuard = function () {
  const gen = TH.gen;
  return () => gen === TH.gen;
};

// A labelled form field with its help text and the slot for its error ([data-error-for]).
// `input` may be a string (the field's name: a text input is made) or an element.
TH.field = function (label, input, opts) {
  const o = opts || {};
  const control = typeof input === "string"
    ? TH.el("input", { name: input, type: o.type || "text", placeholder: o.placeholder, value: o.value, autocomplete: o.autocomplete || "off", "aria-required": o.required ? "true" : null })
    : input;
  const name = o.errorFor || control.getAttribute("name") || "";
  return TH.el("label", { class: "field" + (o.wide ? " wide" : "") + (o.required ? " required" : "") },
    TH.el("span", { class: "label" }, label, o.required ? TH.el("abbr", { title: "required", class: "req" }, " *") : null),
    control,
    o.help ? TH.el("small", { class: "help" }, o.help) : null,
    TH.el("span", { class: "field-error", "data-error-for": name, role: "alert", hidden: true }));
};

TH.select = function (name, values, blank, attrs) {
  const s = TH.el("select", Object.assign({ name }, attrs || {}));
  TH.options(s, values, blank);
  return s;
};

// A section with a heading, for the views' panels.
TH.panel = function (title, attrs, ...children) {
  return TH.el("section", Object.assign({ class: "panel" }, attrs || {}), title ? TH.el("h2", null, title) : null, ...children);
};

// A table with a head; rows go in its tbody.
TH.table = function (attrs, headings) {
  return TH.el("table", attrs, TH.el("thead", null, TH.el("tr", null, headings.map((h) => TH.el("th", { scope: "col" }, h)))), TH.el("tbody"));
};
