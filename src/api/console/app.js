// Trailhub console: a thin client of the same JSON API the CLI and scripts use.
// Every value from the API is inserted with textContent, never as HTML.
"use strict";

const ACTIONS = ["create", "read", "update", "delete", "login", "logout", "export", "import", "grant", "revoke", "execute", "other"];
const CATEGORIES = ["authentication", "authorization", "user_management", "configuration", "data_access", "data_change", "system", "other"];
const COLORS = ["#2f5bd3", "#e07b39", "#3aa17e", "#c23b3b", "#8a5cc7", "#c9a227", "#3b9ec2", "#d45d9b", "#6b7385", "#7fa33a", "#a0522d", "#1d2330"];

const state = { token: localStorage.getItem("trailhub.token") || "", cursor: null, query: "" };
const $ = (sel) => document.querySelector(sel);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
  if (resp.status === 401) { signOut("Your token was refused."); throw new Error("unauthorized"); }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((body.error && body.error.message) || resp.statusText);
  return body;
}

function signOut(message) {
  localStorage.removeItem("trailhub.token");
  state.token = "";
  show("login");
  $("#login-error").textContent = message || "";
}

function show(view) {
  for (const id of ["login", "timeline", "integrations"]) $("#" + id).hidden = id !== view;
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.view === view));
  $("#who").replaceChildren();
  if (view !== "login") {
    const out = el("button", "Sign out");
    out.onclick = () => signOut("");
    $("#who").append(out);
  }
}

function filterParams() {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("#filters"))) if (String(v).trim()) params.set(k, String(v).trim());
  return params;
}

async function loadTimeline(append) {
  const params = filterParams();
  params.set("limit", "100");
  if (append && state.cursor) params.set("cursor", state.cursor);
  $("#status").textContent = "Loading…";
  try {
    const page = await api("/api/v1/events?" + params);
    const body = $("#events tbody");
    if (!append) body.replaceChildren();
    for (const e of page.events) body.append(eventRow(e));
    state.cursor = page.next_cursor;
    $("#more").hidden = !page.next_cursor;
    $("#status").textContent = body.children.length ? `${body.children.length} events shown` : "No events match.";
  } catch (err) {
    $("#status").textContent = "Error: " + err.message;
  }
  if (!append) loadChart();
}

function eventRow(e) {
  const tr = el("tr");
  const actor = e.actor.email || e.actor.name || e.actor.id;
  const target = e.targets.length ? (e.targets[0].name || e.targets[0].id) : "";
  tr.append(el("td", e.time.replace("T", " ").slice(0, 23)), el("td", e.integration.name), el("td", actor), el("td", e.action),
    el("td", e.outcome, e.outcome === "failure" ? "failure" : ""), el("td", e.event_type), el("td", target), el("td", e.actor.ip || ""));
  tr.onclick = () => openDetail(e.id);
  return tr;
}

async function openDetail(id) {
  const e = await api("/api/v1/events/" + encodeURIComponent(id));
  $("#detail-title").textContent = e.event_type;
  const dl = $("#detail-fields");
  dl.replaceChildren();
  const rows = [["time", e.time], ["ingested", e.ingested_at], ["integration", `${e.integration.name} (${e.integration.connector})`],
    ["source id", e.source_id], ["category", e.category], ["action", e.action], ["outcome", e.outcome], ["severity", e.severity],
    ["actor", [e.actor.name, e.actor.email, e.actor.id].filter(Boolean).join(" · ")], ["actor type", e.actor.type],
    ["ip", e.actor.ip], ["user agent", e.actor.user_agent], ["session", e.session_id], ["description", e.description],
    ["targets", e.targets.map((t) => `${t.type}: ${t.name || t.id}`).join(", ")], ["id", e.id]];
  for (const [k, v] of rows) if (v) dl.append(el("dt", k), el("dd", v));
  const changes = $("#detail-changes tbody");
  changes.replaceChildren();
  for (const c of e.changes) {
    const tr = el("tr");
    tr.append(el("td", c.field), el("td", JSON.stringify(c.old)), el("td", JSON.stringify(c.new)));
    changes.append(tr);
  }
  $("#detail-raw").textContent = JSON.stringify(e.raw, null, 2);
  $("#detail").hidden = false;
}

async function loadChart() {
  const params = filterParams();
  params.set("bucket", $("#bucket").value);
  params.set("group_by", $("#group-by").value);
  const chart = $("#chart");
  try {
    const h = await api("/api/v1/events/histogram?" + params);
    drawChart(h.buckets);
  } catch (err) {
    chart.replaceChildren(el("p", "Histogram: " + err.message, "error"));
    $("#legend").replaceChildren();
  }
}

function drawChart(buckets) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  const width = 1000, height = 140;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const groups = [...new Set(buckets.flatMap((b) => Object.keys(b.counts)))].sort();
  const color = (g) => COLORS[groups.indexOf(g) % COLORS.length];
  const max = Math.max(1, ...buckets.map((b) => b.total));
  const w = width / Math.max(1, buckets.length);
  buckets.forEach((b, i) => {
    let y = height;
    for (const g of groups) {
      const n = b.counts[g] || 0;
      if (!n) continue;
      const h = (n / max) * (height - 4);
      const rect = document.createElementNS(NS, "rect");
      rect.setAttribute("x", i * w); rect.setAttribute("y", y - h);
      rect.setAttribute("width", Math.max(1, w - 1)); rect.setAttribute("height", h);
      rect.setAttribute("fill", color(g));
      const title = document.createElementNS(NS, "title");
      title.textContent = `${b.start} ${g}: ${n}`;
      rect.append(title);
      svg.append(rect);
      y -= h;
    }
  });
  $("#chart").replaceChildren(svg);
  const legend = $("#legend");
  legend.replaceChildren();
  for (const g of groups) {
    const item = el("span", g);
    const swatch = el("i");
    swatch.style.background = color(g);
    item.prepend(swatch);
    legend.append(item);
  }
}

async function exportEvents(format) {
  const params = filterParams();
  params.set("format", format);
  $("#status").textContent = "Exporting…";
  const resp = await fetch("/api/v1/events/export?" + params, { headers: { Authorization: "Bearer " + state.token } });
  if (!resp.ok) { $("#status").textContent = "Export failed: " + resp.statusText; return; }
  const blob = await resp.blob();
  const a = el("a");
  a.href = URL.createObjectURL(blob);
  a.download = "trailhub-export." + format;
  a.click();
  URL.revokeObjectURL(a.href);
  $("#status").textContent = "Export downloaded.";
}

async function loadIntegrations() {
  const body = $("#integration-list tbody");
  body.replaceChildren();
  try {
    const list = await api("/api/v1/integrations");
    for (const i of list.integrations || []) {
      const tr = el("tr");
      const lag = i.lag_seconds == null ? "" : `${i.lag_seconds}s`;
      tr.append(el("td", i.name), el("td", i.connector), el("td", i.state, i.state === "error" ? "failure" : ""),
        el("td", i.events_ingested), el("td", lag), el("td", i.last_success_at || ""), el("td", i.last_error || ""));
      body.append(tr);
    }
    $("#integrations-status").textContent = body.children.length ? "" : "No integrations yet.";
  } catch (err) {
    $("#integrations-status").textContent = "Integrations: " + err.message;
  }
}

function start() {
  const fill = (select, values) => { for (const v of values) select.append(el("option", v)); };
  fill($("#filters select[name=action]"), ACTIONS);
  fill($("#filters select[name=category]"), CATEGORIES);
  $("#login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    state.token = $("#token").value.trim();
    try {
      await api("/api/v1/events?limit=1");
      localStorage.setItem("trailhub.token", state.token);
      show("timeline");
      loadTimeline(false);
    } catch (err) {
      $("#login-error").textContent = err.message;
    }
  };
  $("#filters").onsubmit = (ev) => { ev.preventDefault(); loadTimeline(false); };
  $("#more").onclick = () => loadTimeline(true);
  $("#group-by").onchange = loadChart;
  $("#bucket").onchange = loadChart;
  $("#close-detail").onclick = () => { $("#detail").hidden = true; };
  document.querySelectorAll(".exports button").forEach((b) => { b.onclick = () => exportEvents(b.dataset.format); });
  document.querySelectorAll(".tab").forEach((t) => {
    t.onclick = () => {
      if (!state.token) return;
      show(t.dataset.view);
      if (t.dataset.view === "integrations") loadIntegrations(); else loadTimeline(false);
    };
  });
  if (state.token) { show("timeline"); loadTimeline(false); } else show("login");
}

document.addEventListener("DOMContentLoaded", start);
