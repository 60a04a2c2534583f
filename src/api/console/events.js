// Trailhub console, the event views: dashboard (#/dashboard), timeline (#/timeline?<filters>),
// one event (#/events/<id>) and one actor (#/actors/<id>).
"use strict";

(function () {
  const { el, $, api, num, time, fill } = TH;

  // --- shared: an event row -----------------------------------------------------------------

  // tr[data-testid=event-row][data-id]; failures and high severities stand out.
  TH.eventRow = function (e) {
    const classes = [];
    if (e.outcome === "failure") classes.push("failure");
    if (e.severity === "high" || e.severity === "critical") classes.push("sev-high");
    const target = (e.targets || []).map((t) => t.name || t.id).join(", ");
    const tr = el("tr", { "data-testid": "event-row", "data-id": e.id, class: classes.join(" ") || null, tabindex: "0" },
      el("td", { class: "time" }, TH.link("#/events/" + encodeURIComponent(e.id), time(e.time), { class: "plain" })),
      el("td", null, TH.badge(e.severity || "info", "sev sev-" + (e.severity || "info"))),
      el("td", { title: e.integration.id }, e.integration.name),
      el("td", null, e.actor && e.actor.id ? TH.actorLink(e.actor.id, TH.actorLabel(e.actor)) : "—"),
      el("td", null, e.action),
      el("td", { class: "outcome" }, TH.badge(e.outcome, "outcome-" + e.outcome)),
      el("td", null, e.event_type),
      el("td", { title: target }, target),
      el("td", null, (e.actor && e.actor.ip) || ""));
    const open = (ev) => {
      if (ev.target.closest("a")) return;
      TH.go("#/events/" + encodeURIComponent(e.id));
    };
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(ev); });
    return tr;
  };

  TH.eventTable = (attrs) => TH.table(Object.assign({ class: "events" }, attrs || {}),
    ["Time (" + TH.zone + ")", "Severity", "Integration", "Actor", "Action", "Outcome", "Event type", "Target", "IP"]);

  // A list of {name, events} as bars; `link(name)` makes each a link.
  TH.bars = function (items, total, link, attrs) {
    const max = Math.max(1, ...items.map((i) => i.events));
    const list = el("ol", Object.assign({ class: "bars" }, attrs || {}));
    for (const it of items) {
      const bar = el("span", { class: "bar" });
      bar.style.width = Math.max(2, (it.events / max) * 100) + "%";
      list.append(el("li", { "data-name": it.name },
        el("span", { class: "name", title: it.name }, link ? link(it.name) : it.name),
        el("span", { class: "track" }, bar),
        el("span", { class: "count", "data-value": it.events }, num(it.events), total ? el("small", null, " " + TH.pct(it.events / total)) : null)));
    }
    return list;
  };

  // --- dashboard ----------------------------------------------------------------------------

  TH.views.dashboard = function (main) {
    const live = TH.liveGuard();
    const periods = el("div", { class: "cards" });
    const body = el("div", { class: "dashboard-grid" });
    const stamp = el("p", { class: "muted stamp" });
    fill(main, el("div", { class: "view-head" }, el("h1", null, "Dashboard"), stamp), periods, body);
    periods.append(TH.loading("Loading the summary…"));

    const card = (label, testid, p, hint) => el("a", { class: "card", href: "#/timeline?" + new URLSearchParams({ since: p.since }) },
      el("span", { class: "card-label" }, label),
      el("span", { class: "big", "data-testid": testid, "data-value": p.count }, num(p.count)),
      el("span", { class: "muted" }, hint));

    async function load() {
      let s;
      try {
        s = await api("/api/v1/summary?tz=" + encodeURIComponent(TH.zone));
      } catch (err) {
        if (!live()) return;
        if (err.status === 400 && err.field === "tz") {
          s = await api("/api/v1/summary").catch((e) => e);
          if (s instanceof Error) { fill(periods, TH.errorBox(s, load)); return; }
        } else { fill(periods, TH.errorBox(err, load)); return; }
      }
      if (!live()) return;
      stamp.textContent = "Counted in " + s.time_zone + " · updated " + TH.localTime(s.generated_at);
      fill(periods,
        card("Today", "summary-today", s.events.today, "since " + TH.shortTime(s.events.today.since)),
        card("This week", "summary-week", s.events.this_week, "since " + TH.shortTime(s.events.this_week.since)),
        card("This month", "summary-month", s.events.this_month, "since " + TH.shortTime(s.events.this_month.since)));

      const actors = s.top_actors.top.length
        ? TH.bars(s.top_actors.top, s.top_actors.total, (n) => TH.actorLink(n, n), { "data-testid": "top-actors" })
        : el("div", { "data-testid": "top-actors" }, TH.empty("No activity in the last 7 days."));
      const actions = s.top_actions.top.length
        ? TH.bars(s.top_actions.top, s.top_actions.total, (n) => TH.timelineLink({ since: s.top_actions.since, action: n }, n), { "data-testid": "top-actions" })
        : el("div", { "data-testid": "top-actions" }, TH.empty("No activity in the last 7 days."));
      const liveTotal = s.storage.events_live;
      const categories = s.categories.length
        ? TH.bars(s.categories.map((c) => ({ name: c.category, events: c.events })), liveTotal, (n) => TH.timelineLink({ category: n }, n), { "data-testid": "categories" })
        : el("div", { "data-testid": "categories" }, TH.empty("No events stored yet.", "Post events or add an integration."));

      fill(body,
        TH.panel("Recent high-priority events and alerts", { class: "panel span2" }, recentHigh(s.high_priority)),
        TH.panel("Top actors (7 days)", null, actors),
        TH.panel("Top actions (7 days)", null, actions),
        TH.panel("Events by category (all time)", null, categories),
        TH.panel("Integrations in error", null, inError(s.integrations_in_error)),
        TH.panel("Storage", null, storage(s.storage)));
    }

    function recentHigh(hp) {
      const wrap = el("div", { "data-testid": "recent-high" });
      if (!hp.events.length) {
        wrap.append(TH.empty("No high-severity events or alert firings in the last 7 days."));
        return wrap;
      }
      const t = TH.table({ class: "compact" }, ["Time", "Why", "Event type", "Actor", "Outcome", "Description"]);
      for (const e of hp.events) {
        const tr = el("tr", { "data-id": e.id, class: (e.outcome === "failure" ? "failure " : "") + "sev-high" },
          el("td", null, TH.link("#/events/" + encodeURIComponent(e.id), time(e.time), { class: "plain" })),
          el("td", null, TH.badge(e.reason === "alert_fired" ? "alert" : "high severity", e.reason === "alert_fired" ? "alert" : "sev sev-high")),
          el("td", null, e.event_type),
          el("td", null, e.actor && e.actor.id ? TH.actorLink(e.actor.id, TH.actorLabel(e.actor)) : "—"),
          el("td", null, TH.badge(e.outcome, "outcome-" + e.outcome)),
          el("td", { class: "wrap" }, e.description || ""));
        t.tBodies[0].append(tr);
      }
      wrap.append(t);
      if (!hp.complete) wrap.append(el("p", { class: "muted" }, `Read the newest ${num(hp.examined)} events (back to ${TH.localTime(hp.examined_since)}); older high-severity events may exist.`));
      return wrap;
    }

    function inError(list) {
      const wrap = el("div", { "data-testid": "integrations-in-error" });
      if (!list.length) { wrap.append(el("p", { class: "ok-line" }, "✓ Every integration is collecting.")); return wrap; }
      const ul = el("ul", { class: "problems" });
      for (const i of list) {
        ul.append(el("li", { "data-id": i.id },
          el("strong", null, i.name), " ", el("span", { class: "muted" }, "(" + i.connector + ")"),
          el("div", { class: "error" }, i.last_error || "error"),
          el("div", { class: "muted" }, "last success: ", i.last_success_at ? time(i.last_success_at) : "never")));
      }
      wrap.append(ul, TH.link("#/integrations", "Open integrations →"));
      return wrap;
    }

    function storage(st) {
      return el("dl", { class: "facts", "data-testid": "storage" },
        el("dt", null, "On disk"), el("dd", { "data-value": st.bytes_on_disk }, TH.bytes(st.bytes_on_disk)),
        el("dt", null, "Events kept"), el("dd", { "data-value": st.events_live }, num(st.events_live)),
        el("dt", null, "Stored in all"), el("dd", null, num(st.events_stored)),
        el("dt", null, "Purged by retention"), el("dd", null, num(st.events_purged)));
    }

    load();
    TH.every(30000, load);
  };

  // --- timeline -----------------------------------------------------------------------------

  // Milliseconds for a `since`/`until` value as the API reads it (RFC 3339, or 15m/1h/7d ago).
  TH.parseWhen = function (v, now) {
    if (!v) return null;
    const m = /^(\d+)([smhdw])$/.exec(v.trim());
    if (m) return now - Number(m[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[m[2]];
    const t = Date.parse(v);
    return isNaN(t) ? null : t;
  };

  const chartPrefs = () => ({
    group: localStorage.getItem("trailhub.chart.group") || "action",
    bucket: localStorage.getItem("trailhub.chart.bucket") || "auto",
  });

  // The filter inputs, named as the API's parameters.
  TH.filterFields = function (integrations) {
    const integration = TH.select("integration", integrations.map((i) => ({ value: i.id, label: i.name })), "any");
    return [
      TH.field("Since", "since", { placeholder: "7d, 24h or 2024-05-01T00:00:00Z" }),
      TH.field("Until", "until", { placeholder: "now" }),
      TH.field("Search", "q", { placeholder: "words (all must match)", type: "search" }),
      TH.field("Actor", "actor", { placeholder: "id, name or email" }),
      TH.field("Action", TH.select("action", TH.ACTIONS, "any")),
      TH.field("Category", TH.select("category", TH.CATEGORIES, "any")),
      TH.field("Outcome", TH.select("outcome", TH.OUTCOMES, "any")),
      TH.field("Event type", "event_type", { placeholder: "e.g. user.session.start" }),
      TH.field("Integration", integration),
      TH.field("Connector", "connector", { placeholder: "e.g. okta" }),
      TH.field("Target", "target", { placeholder: "id or name" }),
      TH.field("IP", "ip", { placeholder: "e.g. 10.0.0.1" }),
    ];
  };

  // Puts `params` into the form's inputs (adding an option a select does not have yet).
  TH.fillForm = function (form, params) {
    for (const name of TH.FILTERS) {
      const input = form.elements.namedItem(name);
      if (!input) continue;
      const v = params.get(name) || "";
      if (input.tagName === "SELECT" && v && !Array.from(input.options).some((o) => o.value === v)) input.append(el("option", { value: v }, v));
      input.value = v;
    }
  };

  TH.integrationList = async function () {
    const builtin = [{ id: "custom", name: "custom (posted events)" }, { id: "trailhub", name: "trailhub (the hub's own records)" }];
    try {
      const list = await api("/api/v1/integrations");
      return builtin.concat(list.integrations.map((i) => ({ id: i.id, name: i.name })));
    } catch (_) {
      return builtin;
    }
  };

  // <datalist id="integration-ids">: the integrations' ids, labelled with their names, for the
  // forms' integration inputs (filled once per view that asks).
  TH.integrationSuggestions = function () {
    let list = document.getElementById("integration-ids");
    if (!list) { list = el("datalist", { id: "integration-ids" }); document.body.append(list); }
    TH.integrationList().then((items) => {
      list.replaceChildren(...items.map((i) => el("option", { value: i.id, label: i.name })));
    });
  };

  TH.views.timeline = async function (main, query) {
    const live = TH.liveGuard();
    const params = new URLSearchParams(query || "");
    for (const k of Array.from(params.keys())) if (!TH.FILTERS.includes(k)) params.delete(k);
    TH.lastTimeline = "#/timeline?" + params;
    const prefs = chartPrefs();

    const form = el("form", { id: "filters", class: "filters", autocomplete: "off", novalidate: true });
    const quick = el("div", { class: "quick" }, el("span", { class: "muted" }, "Range:"),
      ...["1h", "24h", "7d", "30d"].map((r) => el("button", { type: "button", class: "chip", "data-range": r, onclick: () => applyRange(r) }, r)),
      el("button", { type: "button", class: "chip", onclick: () => TH.go("#/timeline") }, "all time"));
    const formError = el("p", { class: "form-error", "data-testid": "form-error", role: "alert", hidden: true });
    const fields = el("div", { class: "fields" }, TH.filterFields([]));
    form.append(fields, el("div", { class: "form-actions" },
      el("button", { type: "submit", class: "primary" }, "Apply"),
      el("button", { type: "button", onclick: () => TH.go("#/timeline") }, "Clear"), quick), formError);
    TH.fillForm(form, params);

    const groupBy = TH.select("group_by", ["action", "category", "outcome", "integration", "actor"], undefined, { id: "group-by" });
    groupBy.value = prefs.group;
    const bucket = TH.select("bucket", [{ value: "auto", label: "auto" }, "1m", "5m", "1h", "1d"], undefined, { id: "bucket" });
    bucket.value = prefs.bucket;
    const exportButtons = ["csv", "ndjson", "json"].map((f) => el("button", { type: "button", "data-format": f, onclick: () => exportNow(f) }, f.toUpperCase()));
    const chart = el("div", { id: "chart", class: "chart", "aria-label": "activity histogram" }, TH.loading("Loading the chart…"));
    const chartNote = el("p", { class: "muted chart-note" });
    const legend = el("div", { id: "legend", class: "legend" });
    const status = el("p", { id: "status", class: "status", role: "status" });
    const table = TH.eventTable({ id: "events" });
    const more = el("button", { id: "more", type: "button", hidden: true }, "Load more");

    fill(main,
      el("div", { class: "view-head" }, el("h1", null, "Timeline"), el("p", { class: "muted" }, "Times in " + TH.zone + " (" + TH.zoneOffset() + "); hover a time for UTC.")),
      form,
      el("div", { class: "chart-bar" },
        el("label", null, "Activity by ", groupBy), el("label", null, " per ", bucket),
        el("span", { class: "muted" }, "Click a bar or drag across bars to narrow the range."),
        el("span", { class: "exports" }, "Export ", exportButtons)),
      chart, chartNote, legend, status, el("div", { class: "table-wrap" }, table), more);

    TH.integrationList().then((list) => {
      if (!live()) return;
      const sel = form.elements.namedItem("integration");
      const current = params.get("integration") || "";
      TH.options(sel, list.map((i) => ({ value: i.id, label: i.name })), "any");
      if (current && !list.some((i) => i.id === current)) sel.append(el("option", { value: current }, current));
      sel.value = current;
    });

    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams(TH.values(form, TH.FILTERS));
      TH.go("#/timeline" + (String(p) ? "?" + p : ""));
    });
    function applyRange(r) {
      const p = new URLSearchParams(TH.values(form, TH.FILTERS));
      p.set("since", r);
      p.delete("until");
      TH.go("#/timeline?" + p);
    }
    groupBy.addEventListener("change", () => { localStorage.setItem("trailhub.chart.group", groupBy.value); loadChart(); });
    bucket.addEventListener("change", () => { localStorage.setItem("trailhub.chart.bucket", bucket.value); loadChart(); });

    let cursor = null;
    let shown = 0;
    async function loadPage(append) {
      const p = new URLSearchParams(params);
      p.set("limit", "100");
      if (append && cursor) p.set("cursor", cursor);
      status.textContent = append ? "Loading more…" : "Loading events…";
      status.className = "status loading";
      more.disabled = true;
      try {
        const page = await api("/api/v1/events?" + p);
        if (!live()) return;
        const tbody = table.tBodies[0];
        if (!append) { tbody.replaceChildren(); shown = 0; }
        for (const e of page.events) tbody.append(TH.eventRow(e));
        shown += page.events.length;
        cursor = page.next_cursor;
        more.hidden = !cursor;
        status.className = "status";
        if (!shown) {
          status.replaceChildren(TH.empty("No events match these filters.", String(params) ? "Widen the time range or clear a filter." : "Nothing is stored yet: post events or add an integration."));
        } else {
          status.textContent = `${num(shown)} event${shown === 1 ? "" : "s"} shown, newest first` + (cursor ? " — more below" : "");
        }
      } catch (err) {
        if (!live()) return;
        status.className = "status";
        status.replaceChildren(TH.errorBox(err, () => loadPage(append)));
        if (err.field) TH.showError(form, err);
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener("click", () => loadPage(true));

    async function loadChart() {
      const now = Date.now();
      const p = new URLSearchParams(params);
      let since = TH.parseWhen(p.get("since"), now);
      const until = TH.parseWhen(p.get("until"), now) || now;
      if (since === null) {
        since = until - 7 * 86400e3;
        p.set("since", new Date(since).toISOString());
        chartNote.textContent = "The chart shows the 7 days to " + (p.get("until") ? TH.localTime(new Date(until).toISOString()) : "now") + "; set Since to chart another range.";
      } else chartNote.textContent = "";
      const b = bucket.value === "auto" ? TH.autoBucket(since, until) : bucket.value;
      p.set("bucket", b);
      p.set("group_by", groupBy.value);
      try {
        const h = await api("/api/v1/events/histogram?" + p);
        if (!live()) return;
        const groups = TH.drawChart(chart, h, (s, u) => {
          const q = new URLSearchParams(params);
          q.set("since", s);
          q.set("until", u);
          TH.go("#/timeline?" + q);
        });
        const total = h.buckets.reduce((a, x) => a + x.total, 0);
        fill(legend, groups.map((g) => {
          const sw = el("i");
          sw.style.background = g.color;
          return el("span", null, sw, g.name);
        }), el("span", { class: "muted" }, `${num(total)} event${total === 1 ? "" : "s"} from ${TH.localTime(h.since)} to ${TH.localTime(h.until)}, ${h.buckets.length} bars of ${h.bucket}`));
      } catch (err) {
        if (!live()) return;
        fill(chart, TH.errorBox(err, loadChart));
        legend.replaceChildren();
      }
    }

    async function exportNow(format) {
      const p = new URLSearchParams(params);
      p.set("format", format);
      status.textContent = "Exporting…";
      try {
        const got = await TH.download("/api/v1/events/export?" + p, "trailhub-export." + format);
        TH.flash(`Downloaded ${got.name} (${TH.bytes(got.bytes)}).`, "ok");
        status.textContent = `${num(shown)} events shown, newest first`;
      } catch (err) {
        TH.flash("Export failed: " + err.message, "error");
      }
    }

    loadPage(false);
    loadChart();
    let resize = null;
    window.onresize = () => { clearTimeout(resize); resize = setTimeout(() => { if (live()) loadChart(); }, 300); };
  };

  // --- one event ----------------------------------------------------------------------------

  TH.views.event = async function (main, id) {
    const live = TH.liveGuard();
    const back = TH.link(TH.lastTimeline || "#/timeline", "← Back to the timeline", { class: "back" });
    const detail = el("article", { id: "detail", class: "detail" }, TH.loading("Loading the event…"));
    fill(main, back, detail);
    let e;
    try {
      e = await api("/api/v1/events/" + encodeURIComponent(id) + "?enrich=true");
    } catch (err) {
      if (!live()) return;
      fill(detail, el("h1", { "data-testid": "detail-title" }, "Event " + id), TH.errorBox(err));
      return;
    }
    if (!live()) return;
    const a = e.actor || {};
    const cls = [e.outcome === "failure" ? "failure" : "", e.severity === "high" ? "sev-high" : ""].join(" ").trim();
    const rows = [
      ["Time", el("span", null, time(e.time), el("span", { class: "muted mono" }, "  " + e.time))],
      ["Ingested", time(e.ingested_at)],
      ["Integration", TH.timelineLink({ integration: e.integration.id }, `${e.integration.name} (${e.integration.connector})`)],
      ["Actor", a.id ? el("span", null, TH.link("#/actors/" + encodeURIComponent(a.id), TH.actorLabel(a), { "data-testid": "actor-link" }),
        el("span", { class: "muted" }, "  " + [a.email, a.id, a.type].filter(Boolean).join(" · "))) : null],
      ["IP", a.ip ? TH.timelineLink({ ip: a.ip }, a.ip) : null],
      ["User agent", a.user_agent],
      ["Location", a.location ? JSON.stringify(a.location) : null],
      ["Session", e.session_id],
      ["Targets", (e.targets || []).length ? el("ul", { class: "plain" }, e.targets.map((t) => el("li", null, el("span", { class: "muted" }, t.type + ": "), t.name || t.id, t.name ? el("span", { class: "muted" }, " (" + t.id + ")") : null))) : null],
      ["Source id", e.source_id],
      ["Event id", e.id],
    ];
    const enr = e.enrichment;
    if (enr && enr.user_agent) rows.push(["Client", [enr.user_agent.browser, enr.user_agent.os, enr.user_agent.device].filter(Boolean).map((x) => typeof x === "string" ? x : x.name || JSON.stringify(x)).join(" · ")]);
    if (enr && enr.geo) rows.push(["Geo", [enr.geo.city, enr.geo.region, enr.geo.country, enr.geo.asn_org].filter(Boolean).join(", ")]);
    const dl = el("dl", { class: "facts" });
    for (const [k, v] of rows) if (v !== null && v !== undefined && v !== "") dl.append(el("dt", null, k), el("dd", null, v));

    const changes = e.changes && e.changes.length ? (() => {
      const t = TH.table({ class: "compact" }, ["Field", "Before", "After"]);
      for (const c of e.changes) t.tBodies[0].append(el("tr", null, el("td", null, c.field), el("td", { class: "old" }, JSON.stringify(c.old)), el("td", { class: "new" }, JSON.stringify(c.new))));
      return t;
    })() : el("p", { class: "muted" }, "No field changes recorded.");

    const related = el("div", { "data-testid": "related" }, TH.loading("Loading related events…"));
    fill(detail,
      el("header", { class: "detail-head " + cls },
        el("h1", { "data-testid": "detail-title" }, e.event_type),
        el("div", { class: "badges" }, TH.badge(e.outcome, "outcome-" + e.outcome), TH.badge(e.severity, "sev sev-" + e.severity), TH.badge(e.category, "plain"), TH.badge(e.action, "plain")),
        e.description ? el("p", { class: "description" }, e.description) : null),
      dl,
      TH.panel("Changes", null, changes),
      TH.panel("Related events (same target or session, just before and after)", null, related),
      TH.panel("Raw vendor payload", null, el("pre", { id: "detail-raw" }, JSON.stringify(e.raw, null, 2))));

    try {
      const r = await api("/api/v1/events/" + encodeURIComponent(id) + "/related?limit=10");
      if (!live()) return;
      const sides = [["Before", r.before], ["After", r.after]];
      if (!r.before.length && !r.after.length) {
        fill(related, TH.empty("No other event shares a target or the session with this one."));
        return;
      }
      related.replaceChildren();
      for (const [label, list] of sides) {
        related.append(el("h3", null, label + " (" + list.length + ")"));
        if (!list.length) { related.append(el("p", { class: "muted" }, "None.")); continue; }
        const t = TH.eventTable({ class: "events compact" });
        for (const x of list) {
          const tr = TH.eventRow(x.event);
          tr.cells[7].textContent = "via " + x.via.join(", ");
          t.tBodies[0].append(tr);
        }
        related.append(t);
      }
      if (r.capped.before || r.capped.after) related.append(el("p", { class: "muted" }, "Only the nearest " + r.limit + " on each side are shown."));
    } catch (err) {
      if (live()) fill(related, TH.errorBox(err));
    }
  };

  // --- one actor ----------------------------------------------------------------------------

  TH.views.actor = async function (main, id) {
    const live = TH.liveGuard();
    const head = el("div", { class: "view-head" }, el("h1", null, "Actor ", el("span", { class: "mono" }, id)));
    const body = el("div", { class: "actor" }, TH.loading("Loading the actor's activity…"));
    fill(main, TH.link(TH.lastTimeline || "#/timeline", "← Back to the timeline", { class: "back" }), head, body);
    let a;
    try {
      a = await api("/api/v1/actors/" + encodeURIComponent(id));
    } catch (err) {
      if (live()) fill(body, err.status === 404 ? TH.empty("No event names this actor.", err.message) : TH.errorBox(err));
      return;
    }
    if (!live()) return;
    const who = a.actor;
    fill(head, el("h1", null, who.name || who.email || who.id),
      el("p", { class: "muted" }, [who.email, who.id, who.type].filter(Boolean).join(" · "), "  ",
        TH.timelineLink({ actor: who.id }, "Open in the timeline →")));
    const failedLogins = el("span", { class: a.logins.failed ? "big failure" : "big", "data-value": a.logins.failed }, num(a.logins.failed));
    const totals = el("div", { class: "cards", "data-testid": "actor-totals" },
      el("div", { class: "card" }, el("span", { class: "card-label" }, "Events"), el("span", { class: "big", "data-testid": "actor-total", "data-value": a.total }, num(a.total) + (a.capped.total ? "+" : ""))),
      el("div", { class: "card" }, el("span", { class: "card-label" }, "Logins"), el("span", { class: "big", "data-testid": "actor-logins", "data-value": a.logins.succeeded }, num(a.logins.succeeded))),
      el("div", { class: "card" }, el("span", { class: "card-label" }, "Failed logins"), el("span", { "data-testid": "actor-failed-logins" }, failedLogins)),
      el("div", { class: "card" }, el("span", { class: "card-label" }, "Sessions"), el("span", { class: "big" }, num(a.sessions))),
      el("div", { class: "card" }, el("span", { class: "card-label" }, "First seen"), el("span", { class: "when", "data-testid": "actor-first-seen" }, time(a.first_seen))),
      el("div", { class: "card" }, el("span", { class: "card-label" }, "Last seen"), el("span", { class: "when", "data-testid": "actor-last-seen" }, time(a.last_seen))));
    const breakdown = (title, list, testid, link) => TH.panel(title, { "data-testid": testid },
      list.length ? TH.bars(list, a.details_events, link) : el("p", { class: "muted" }, "None recorded."));
    const recent = TH.eventTable({ id: "events" });
    for (const e of a.recent) recent.tBodies[0].append(TH.eventRow(e));
    fill(body, totals,
      a.capped.details ? el("p", { class: "muted" }, `Breakdowns cover the newest ${num(a.details_events)} events (since ${TH.localTime(a.details_since)}).`) : null,
      el("div", { class: "dashboard-grid" },
        breakdown("By integration", a.by_integration, "actor-integrations"),
        breakdown("By action", a.by_action, "actor-actions", (n) => TH.timelineLink({ actor: who.id, action: n }, n)),
        breakdown("By category", a.by_category, "actor-categories", (n) => TH.timelineLink({ actor: who.id, category: n }, n)),
        breakdown("IP addresses", a.ip_addresses, "actor-ips", (n) => TH.timelineLink({ ip: n }, n)),
        breakdown("Browsers", a.browsers, "actor-browsers"),
        breakdown("Operating systems", a.operating_systems, "actor-os"),
        breakdown("Countries", a.countries, "actor-countries")),
      TH.panel("Recent events", { class: "panel" }, a.recent.length ? recent : TH.empty("No recent events.")));
  };
})();
