// Trailhub console, the desk's work: alerts (#/alerts: rules, test-fire, history), export jobs
// (#/exports) and reports (#/reports: generate, schedule, download).
"use strict";

(function () {
  const { el, api, num, time, fill } = TH;

  const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  const PRIORITIES = ["low", "medium", "high", "critical"];
  const RULE_FILTERS = ["q", "event_type", "action", "category", "outcome", "actor", "integration"];
  const JOB_FILTERS = ["q", "actor", "action", "category", "outcome", "event_type", "integration", "connector", "target", "ip"];

  TH.channelList = async function () {
    try { return (await api("/api/v1/channels")).channels; } catch (_) { return []; }
  };

  const channelSelect = (channels) => {
    const s = el("select", { name: "channels", multiple: true, size: Math.min(4, Math.max(2, channels.length)) });
    for (const c of channels) s.append(el("option", { value: c.id }, `${c.name} (${c.kind})`));
    if (!channels.length) s.disabled = true;
    return s;
  };
  // A text input for an integration id, suggesting the hub's integrations by name.
  const integrationInput = () => {
    TH.integrationSuggestions();
    return el("input", { name: "integration", type: "text", list: "integration-ids", placeholder: "integration id", autocomplete: "off" });
  };
  const selected = (select) => Array.from(select.selectedOptions).map((o) => o.value);
  const formError = () => el("p", { class: "form-error", "data-testid": "form-error", role: "alert", hidden: true });
  const errorIn = (form, err, map) => { TH.showError(form, err, map); };

  // --- alerts -------------------------------------------------------------------------------

  // The API names rule fields by their JSON path; the form by one name each.
  const ruleField = (f) => {
    if (/^channels/.test(f)) return "channels";
    if (f === "condition" || f === "condition.type") return "condition";
    const m = /^(filter|condition|schedule)\.(\w+)/.exec(f);
    return m ? m[2] : f;
  };

  const conditionText = (c) => {
    if (!c || c.type === "event") return "every matching event";
    if (c.type === "count") return `≥ ${num(c.threshold)} within ${TH.duration(c.window_secs)}`;
    return `${c.field} ${c.op} ${c.value}`;
  };

  function ruleForm(channels) {
    const condition = TH.select("condition", [{ value: "event", label: "every matching event" }, { value: "count", label: "count ≥ threshold within a window" }, { value: "value", label: "a number in the event compared" }]);
    const countPart = el("fieldset", { class: "fields cond-count", hidden: true }, el("legend", null, "Count"),
      TH.field("Threshold", "threshold", { type: "number", placeholder: "5" }),
      TH.field("Window (seconds)", "window_secs", { type: "number", placeholder: "600" }),
      TH.field("Count per", "group_by", { placeholder: "actor.id", help: "A path into the event (actor.id, actor.ip, integration.id); empty: one count" }));
    const valuePart = el("fieldset", { class: "fields cond-value", hidden: true }, el("legend", null, "Value"),
      TH.field("Field", "field", { placeholder: "raw.records" }),
      TH.field("Compare", TH.select("op", [">", ">=", "<", "<=", "==", "!="])),
      TH.field("Value", "value", { type: "number", placeholder: "1000" }));
    const days = el("span", { class: "days" }, DAYS.map((d) => el("label", { class: "check" }, el("input", { type: "checkbox", name: "days", value: d }), d)));
    const form = el("form", { id: "rule-form", class: "stacked", autocomplete: "off", novalidate: true },
      el("div", { class: "fields" },
        TH.field("Name", "name", { required: true, placeholder: "5+ failed logins in 10 min", wide: true })),
      el("fieldset", { class: "fields" }, el("legend", null, "Which events (the timeline's filters)"),
        TH.field("Search", "q", { placeholder: "words" }),
        TH.field("Event type", "event_type"),
        TH.field("Action", TH.select("action", TH.ACTIONS, "any")),
        TH.field("Category", TH.select("category", TH.CATEGORIES, "any")),
        TH.field("Outcome", TH.select("outcome", TH.OUTCOMES, "any")),
        TH.field("Actor", "actor", { placeholder: "id, name or email" }),
        TH.field("Integration", integrationInput())),
      el("fieldset", { class: "fields" }, el("legend", null, "Fires on"), TH.field("Condition", condition)),
      countPart, valuePart,
      el("fieldset", { class: "fields" }, el("legend", null, "Armed (optional)"),
        TH.field("Time zone", "timezone", { placeholder: TH.zone }),
        TH.field("Days", days, { errorFor: "days", help: "none ticked: every day" }),
        TH.field("From", "from", { placeholder: "22:00" }),
        TH.field("To", "to", { placeholder: "06:00" })),
      el("fieldset", { class: "fields" }, el("legend", null, "Then"),
        TH.field("Priority", TH.select("priority", PRIORITIES)),
        TH.field("Quiet for (seconds)", "suppress_secs", { type: "number", help: "after a firing, the same group stays quiet; default: the window" }),
        TH.field("Message", "message", { wide: true, placeholder: "{{alert.count}} failed logins for {{actor.name}} from {{actor.ip}}" }),
        TH.field("Channels", channelSelect(channels), { help: channels.length ? "Ctrl/⌘-click for several" : "No notification channel yet (POST /api/v1/channels)" })),
      el("div", { class: "form-actions" }, el("button", { type: "submit", class: "primary" }, "Create rule")),
      formError());
    form.elements.namedItem("priority").value = "medium";
    condition.addEventListener("change", () => {
      countPart.hidden = condition.value !== "count";
      valuePart.hidden = condition.value !== "value";
    });
    return form;
  }

  function ruleBody(form) {
    const v = TH.values(form, ["name", "condition", "threshold", "window_secs", "group_by", "field", "op", "value", "timezone", "from", "to", "suppress_secs", "priority", "message"]);
    const body = { name: v.name || "" };
    const filter = TH.values(form, RULE_FILTERS);
    if (Object.keys(filter).length) body.filter = filter;
    const problems = [];
    const need = (k, why) => { if (!v[k]) problems.push([k, why]); };
    if (v.condition === "count") {
      need("threshold", "required for a count condition");
      need("window_secs", "required for a count condition");
      body.condition = { type: "count", threshold: Number(v.threshold), window_secs: Number(v.window_secs) };
    } else if (v.condition === "value") {
      need("field", "required for a value condition");
      need("value", "required for a value condition");
      body.condition = { type: "value", field: v.field || "", op: v.op, value: Number(v.value) };
    } else body.condition = { type: "event" };
    if (v.group_by) body.group_by = v.group_by;
    const days = TH.$$("input[name=days]:checked", form).map((i) => i.value);
    if (v.timezone || v.from || v.to || days.length) {
      need("from", "required with a schedule (HH:MM)");
      need("to", "required with a schedule (HH:MM)");
      body.schedule = { timezone: v.timezone || TH.zone, days, from: v.from || "", to: v.to || "" };
    }
    if (v.suppress_secs) body.suppress_secs = Number(v.suppress_secs);
    body.priority = v.priority || "medium";
    if (v.message) body.message = v.message;
    const ch = selected(form.elements.namedItem("channels"));
    if (ch.length) body.channels = ch;
    if (!v.name) problems.unshift(["name", "is required"]);
    return { body, problems };
  }

  TH.views.alerts = async function (main) {
    const live = TH.liveGuard();
    const rulesBox = el("div", { id: "rules" }, TH.loading("Loading rules…"));
    const historyBox = el("div", { id: "firings" }, TH.loading("Loading the history…"));
    const formBox = el("div", null, TH.loading());
    fill(main, el("div", { class: "view-head" }, el("h1", null, "Alerts"),
      el("p", { class: "muted" }, "A rule is a timeline filter plus a condition; each firing is recorded here and as an alert.fired event.")),
    TH.panel("Rules", null, rulesBox),
    TH.panel("History (newest first, refreshed every 3 s)", null, historyBox),
    TH.panel("New rule", null, formBox));

    const channels = await TH.channelList();
    if (!live()) return;
    const channelName = (id) => (channels.find((c) => c.id === id) || { name: id }).name;
    const form = ruleForm(channels);
    fill(formBox, form);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      TH.clearErrors(form);
      const { body, problems } = ruleBody(form);
      if (problems.length) { for (const [f, m] of problems) TH.fieldError(form, f, m); return; }
      await TH.busy(form, async () => {
        try {
          const rule = await api("/api/v1/alerts/rules", { method: "POST", body });
          TH.flash(`Rule “${rule.name}” created; it sees every event stored from now on.`, "ok");
          form.reset();
          form.elements.namedItem("priority").value = "medium";
          form.elements.namedItem("condition").dispatchEvent(new Event("change"));
          loadRules();
        } catch (err) { errorIn(form, err, ruleField); }
      });
    });

    async function loadRules() {
      try {
        const { rules } = await api("/api/v1/alerts/rules");
        if (!live()) return;
        if (!rules.length) { fill(rulesBox, TH.empty("No alert rules yet.", "Create one with the form below: a filter, a condition, a priority.")); return; }
        const t = TH.table({ id: "rule-list" }, ["Name", "Filter", "Condition", "Armed", "Priority", "Channels", "Enabled", ""]);
        for (const r of rules) {
          const result = el("div", { class: "test-result", "data-testid": "rule-test-result", role: "status" });
          const test = el("button", { type: "button", "data-testid": "rule-test" }, "Test-fire");
          test.addEventListener("click", () => testFire(r, test, result));
          const del = el("button", { type: "button", class: "danger link" }, "Delete");
          del.addEventListener("click", async () => {
            if (!confirm(`Delete the rule “${r.name}”? Its history stays.`)) return;
            try { await api("/api/v1/alerts/rules/" + encodeURIComponent(r.id), { method: "DELETE" }); loadRules(); } catch (err) { TH.flash(err.message, "error"); }
          });
          const enabled = el("input", { type: "checkbox", "aria-label": "enabled" });
          enabled.checked = r.enabled;
          enabled.addEventListener("change", async () => {
            try { await api("/api/v1/alerts/rules/" + encodeURIComponent(r.id), { method: "PATCH", body: { enabled: enabled.checked } }); } catch (err) { enabled.checked = !enabled.checked; TH.flash(err.message, "error"); }
          });
          const filter = Object.entries(r.filter || {}).map(([k, v]) => `${k}=${v}`).join(" ") || "every event";
          const sched = r.schedule ? `${(r.schedule.days || []).join(",") || "daily"} ${r.schedule.from}–${r.schedule.to} ${r.schedule.timezone}` : "always";
          t.tBodies[0].append(el("tr", { "data-testid": "rule-row", "data-id": r.id, class: "prio-" + r.priority },
            el("td", null, el("strong", null, r.name), r.description ? el("div", { class: "muted" }, r.description) : null),
            el("td", { class: "mono" }, filter),
            el("td", null, conditionText(r.condition), r.group_by ? el("div", { class: "muted" }, "per " + r.group_by) : null),
            el("td", null, sched),
            el("td", null, TH.badge(r.priority, "prio prio-" + r.priority)),
            el("td", null, r.channels.map(channelName).join(", ") || el("span", { class: "muted" }, "none")),
            el("td", null, enabled),
            el("td", { class: "actions" }, test, del, result)));
        }
        fill(rulesBox, t);
      } catch (err) { if (live()) fill(rulesBox, TH.errorBox(err, loadRules)); }
    }

    async function testFire(rule, button, result) {
      button.disabled = true;
      result.className = "test-result loading";
      result.textContent = "Firing…";
      try {
        const f = await api("/api/v1/alerts/rules/" + encodeURIComponent(rule.id) + "/test", { method: "POST" });
        result.className = "test-result ok";
        result.dataset.ok = "true";
        fill(result, "Fired on ", TH.link("#/events/" + encodeURIComponent(f.event_id), "this event"), ": " + f.message);
        loadHistory();
      } catch (err) {
        result.className = "test-result bad";
        result.dataset.ok = "false";
        result.textContent = err.message;
      } finally { button.disabled = false; }
    }

    async function loadHistory() {
      try {
        const { alerts } = await api("/api/v1/alerts?limit=50");
        if (!live()) return;
        if (!alerts.length) { fill(historyBox, TH.empty("No rule has fired yet.", "Test-fire a rule to see one here.")); return; }
        const t = TH.table({ id: "firing-list", class: "compact" }, ["Fired", "Rule", "Priority", "Message", "Event", "Delivered"]);
        for (const f of alerts) {
          const deliveries = (f.deliveries || []).map((d) => `${channelName(d.channel)}: ${(d.status && d.status.status) || "queued"}`).join(", ");
          t.tBodies[0].append(el("tr", { "data-testid": "firing-row", "data-id": f.id, class: (f.priority === "high" || f.priority === "critical") ? "sev-high" : null },
            el("td", null, time(f.fired_at)),
            el("td", null, f.rule_name, f.test ? el("span", { class: "badge plain" }, "test") : null, f.group ? el("div", { class: "muted" }, f.group + (f.count > 1 ? ` · ${f.count} events` : "")) : null),
            el("td", null, TH.badge(f.priority, "prio prio-" + f.priority)),
            el("td", { class: "wrap" }, f.message),
            el("td", null, f.event_id ? TH.link("#/events/" + encodeURIComponent(f.event_id), time(f.event_time, true), { class: "plain" }) : "—"),
            el("td", { class: "wrap" }, deliveries || el("span", { class: "muted" }, "no channel"))));
        }
        fill(historyBox, t);
      } catch (err) { if (live()) fill(historyBox, TH.errorBox(err, loadHistory)); }
    }

    loadRules();
    loadHistory();
    TH.every(3000, loadHistory);
  };

  // --- jobs: shared -------------------------------------------------------------------------

  const jobFilterFields = () => [
    TH.field("Search", "q", { placeholder: "words" }),
    TH.field("Actor", "actor", { placeholder: "id, name or email" }),
    TH.field("Action", TH.select("action", TH.ACTIONS, "any")),
    TH.field("Category", TH.select("category", TH.CATEGORIES, "any")),
    TH.field("Outcome", TH.select("outcome", TH.OUTCOMES, "any")),
    TH.field("Event type", "event_type"),
    TH.field("Integration", integrationInput()),
    TH.field("Connector", "connector"),
    TH.field("Target", "target"),
    TH.field("IP", "ip"),
  ];
  const jobField = (f) => { const m = /^filter\.(\w+)/.exec(f); return m ? m[1] : f; };
  const ACTIVE = ["queued", "running"];

  function progress(j) {
    const p = j.progress || {};
    if (j.state === "completed") return el("span", null, num(j.events != null ? j.events : p.events) + " events");
    if (j.state === "failed") return el("span", { class: "error" }, j.error || "failed");
    if (j.state === "expired") return el("span", { class: "muted" }, "file deleted");
    const bar = el("progress", { max: 100, value: p.percent || 0 });
    return el("span", { class: "progress" }, bar, ` ${num(p.events || 0)}` + (p.estimated_total ? ` of ~${num(p.estimated_total)}` : "") + ` (${p.percent || 0} %)`);
  }

  function rangeText(j) {
    return el("span", null, time(j.since, true), " → ", time(j.until, true));
  }

  const filterText = (f) => Object.entries(f || {}).map(([k, v]) => `${k}=${v}`).join(" ") || "—";

  function deleteButton(kind, j, reload) {
    const b = el("button", { type: "button", class: "link danger" }, ACTIVE.includes(j.state) ? "Cancel" : "Delete");
    b.addEventListener("click", async () => {
      if (!confirm(`${b.textContent} “${j.name}”?`)) return;
      try { await api(`/api/v1/${kind}/${encodeURIComponent(j.id)}`, { method: "DELETE" }); reload(); } catch (err) { TH.flash(err.message, "error"); }
    });
    return b;
  }

  function downloadLink(testid, path, fallback, label) {
    const a = el("a", { href: "#", "data-testid": testid, class: "download" }, label);
    a.addEventListener("click", async (ev) => {
      ev.preventDefault();
      a.classList.add("loading");
      try {
        const got = await TH.download(path, fallback);
        TH.flash(`Downloaded ${got.name} (${TH.bytes(got.bytes)}).`, "ok");
      } catch (err) { TH.flash("Download failed: " + err.message, "error"); } finally { a.classList.remove("loading"); }
    });
    return a;
  }

  // Polls while a job is queued or running: every 1.5 s then, every 15 s otherwise.
  function refresher(load) {
    let last = 0;
    let busy = false;
    TH.every(1500, async () => {
      if (busy) return;
      if (!load.active && Date.now() - last < 15000) return;
      busy = true;
      last = Date.now();
      try { await load(); } finally { busy = false; }
    });
  }

  // --- exports ------------------------------------------------------------------------------

  TH.views.exports = function (main) {
    const live = TH.liveGuard();
    const list = el("div", { id: "export-list" }, TH.loading("Loading export jobs…"));
    const form = el("form", { id: "export-form", class: "stacked", autocomplete: "off", novalidate: true },
      el("div", { class: "fields" },
        TH.field("Name", "name", { placeholder: "May failed logins" }),
        TH.field("Format", TH.select("format", [{ value: "csv", label: "CSV (spreadsheet-safe)" }, { value: "json", label: "JSON array" }, { value: "ndjson", label: "NDJSON" }])),
        TH.field("Since", "since", { required: true, value: "7d", placeholder: "7d or 2024-05-01T00:00:00Z" }),
        TH.field("Until", "until", { placeholder: "now" })),
      el("fieldset", { class: "fields" }, el("legend", null, "Filters"), jobFilterFields()),
      el("div", { class: "form-actions" }, el("button", { type: "submit", class: "primary" }, "Start export"),
        el("span", { class: "muted" }, "At most 92 days per job; files are kept 7 days.")),
      formError());
    fill(main, el("div", { class: "view-head" }, el("h1", null, "Exports"),
      el("p", { class: "muted" }, "Export jobs run in the background; every create and download is recorded.")),
    TH.panel("New export", null, form), TH.panel("Export jobs", null, list));

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      TH.clearErrors(form);
      const v = TH.values(form, ["name", "format", "since", "until"]);
      if (!v.since) { TH.fieldError(form, "since", "required: the start of the range (7d, or an RFC 3339 time)"); return; }
      const body = Object.assign(v, { filter: TH.values(form, JOB_FILTERS) });
      await TH.busy(form, async () => {
        try {
          const job = await api("/api/v1/exports", { method: "POST", body });
          TH.flash(`Export “${job.name}” queued.`, "ok");
          load();
        } catch (err) { errorIn(form, err, jobField); }
      });
    });

    async function load() {
      try {
        const { exports, total } = await api("/api/v1/exports?limit=100");
        if (!live()) return;
        load.active = exports.some((j) => ACTIVE.includes(j.state));
        if (!exports.length) { fill(list, TH.empty("No export jobs yet.", "Start one above; it appears here with its progress.")); return; }
        const t = TH.table({ id: "exports" }, ["Name", "Format", "Range", "Filters", "Made", "State", "Progress", "Size", ""]);
        for (const j of exports) {
          const dl = j.state === "completed" ? downloadLink("export-download", `/api/v1/exports/${encodeURIComponent(j.id)}/download`, `${j.name}.${j.format}`, "Download") : null;
          t.tBodies[0].append(el("tr", { "data-testid": "export-row", "data-id": j.id, "data-status": j.state, class: j.state === "failed" ? "failure" : null },
            el("td", null, el("strong", null, j.name), el("div", { class: "muted" }, "by " + j.created_by.name)),
            el("td", null, j.format),
            el("td", null, rangeText(j)),
            el("td", { class: "mono wrap" }, filterText(j.filter)),
            el("td", null, time(j.created_at, true)),
            el("td", null, TH.badge(j.state, "state state-" + j.state)),
            el("td", null, progress(j)),
            el("td", { title: j.sha256 ? "SHA-256 " + j.sha256 : null }, j.bytes != null ? TH.bytes(j.bytes) : "—"),
            el("td", { class: "actions" }, dl, deleteButton("exports", j, load))));
        }
        fill(list, t, total > exports.length ? el("p", { class: "muted" }, `The newest ${exports.length} of ${num(total)}.`) : null);
      } catch (err) { if (live()) fill(list, TH.errorBox(err, load)); }
    }
    load();
    refresher(load);
  };

  // --- reports ------------------------------------------------------------------------------

  const FALLBACK_KINDS = ["user_access", "data_changes", "security_events", "export_activity", "admin_activity", "system_access"].map((k) => ({ name: k, title: k }));

  TH.views.reports = async function (main) {
    const live = TH.liveGuard();
    const list = el("div", { id: "report-list" }, TH.loading("Loading reports…"));
    const schedules = el("div", { id: "schedule-list" }, TH.loading("Loading schedules…"));
    const about = el("p", { class: "muted kind-about" });
    const kindSelect = TH.select("kind", FALLBACK_KINDS.map((k) => ({ value: k.name, label: k.title })));
    const form = el("form", { id: "report-form", class: "stacked", autocomplete: "off", novalidate: true },
      el("div", { class: "fields" },
        TH.field("Kind", kindSelect, { required: true }),
        TH.field("Name", "name", { placeholder: "Q2 access review" }),
        TH.field("Since", "since", { required: true, value: "30d", placeholder: "30d or 2024-04-01T00:00:00Z" }),
        TH.field("Until", "until", { placeholder: "now" })),
      about,
      el("fieldset", { class: "fields" }, el("legend", null, "Filters"), jobFilterFields()),
      el("div", { class: "form-actions" }, el("button", { type: "submit", class: "primary" }, "Generate report")),
      formError());
    const scheduleKind = TH.select("kind", FALLBACK_KINDS.map((k) => ({ value: k.name, label: k.title })));
    const channels = await TH.channelList();
    if (!live()) return;
    const scheduleForm = el("form", { id: "schedule-form", class: "stacked", autocomplete: "off", novalidate: true },
      el("div", { class: "fields" },
        TH.field("Kind", scheduleKind, { required: true }),
        TH.field("Cron", "cron", { required: true, placeholder: "0 6 * * 1", help: "5 fields (or 6, seconds first), read in the time zone" }),
        TH.field("Each covers", "range", { required: true, value: "P7D", help: "an ISO 8601 duration ending at each run (P7D, PT12H)" }),
        TH.field("Time zone", "time_zone", { value: TH.zone }),
        TH.field("Name", "name", { placeholder: "weekly security events" }),
        TH.field("Channels", channelSelect(channels), { help: channels.length ? "each report is announced there" : "no notification channel yet" })),
      el("div", { class: "form-actions" }, el("button", { type: "submit", class: "primary" }, "Add schedule"), el("span", { class: "muted" }, "Admins only.")),
      formError());
    fill(main, el("div", { class: "view-head" }, el("h1", null, "Reports"),
      el("p", { class: "muted" }, "Compliance reports as PDF and CSV over a range of the timeline.")),
    el("div", { class: "two-col" }, TH.panel("Generate", null, form), TH.panel("Schedule", null, scheduleForm)),
    TH.panel("Reports", null, list), TH.panel("Schedules", null, schedules));

    let kinds = FALLBACK_KINDS;
    const showAbout = () => { const k = kinds.find((x) => x.name === kindSelect.value); about.textContent = k && k.about ? k.about : ""; };
    kindSelect.addEventListener("change", showAbout);

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      TH.clearErrors(form);
      const v = TH.values(form, ["kind", "name", "since", "until"]);
      if (!v.since) { TH.fieldError(form, "since", "required: the start of the range"); return; }
      const body = Object.assign(v, { filter: TH.values(form, JOB_FILTERS) });
      await TH.busy(form, async () => {
        try {
          const job = await api("/api/v1/reports", { method: "POST", body });
          TH.flash(`Report “${job.name}” queued.`, "ok");
          load();
        } catch (err) { errorIn(form, err, jobField); }
      });
    });

    scheduleForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      TH.clearErrors(scheduleForm);
      const v = TH.values(scheduleForm, ["kind", "cron", "range", "time_zone", "name"]);
      const problems = [["cron", "required"], ["range", "required"]].filter(([k]) => !v[k]);
      if (problems.length) { for (const [f, m] of problems) TH.fieldError(scheduleForm, f, m); return; }
      v.channels = selected(scheduleForm.elements.namedItem("channels"));
      await TH.busy(scheduleForm, async () => {
        try {
          const s = await api("/api/v1/reports/schedules", { method: "POST", body: v });
          TH.flash(`Schedule “${s.name}” added; next run ${TH.localTime(s.next_run)}.`, "ok");
          scheduleForm.elements.namedItem("cron").value = "";
          loadSchedules();
        } catch (err) { errorIn(scheduleForm, err, jobField); }
      });
    });

    async function load() {
      try {
        const r = await api("/api/v1/reports?limit=100");
        if (!live()) return;
        if (r.kinds && r.kinds.length && kinds === FALLBACK_KINDS) {
          kinds = r.kinds;
          for (const s of [kindSelect, scheduleKind]) {
            const keep = s.value;
            TH.options(s, kinds.map((k) => ({ value: k.name, label: k.title })));
            s.value = keep;
          }
          showAbout();
        }
        load.active = r.reports.some((j) => ACTIVE.includes(j.state));
        if (!r.reports.length) { fill(list, TH.empty("No reports yet.", "Generate one above; PDF and CSV appear here when it is ready.")); return; }
        const title = (n) => (kinds.find((k) => k.name === n) || { title: n }).title;
        const t = TH.table({ id: "reports" }, ["Name", "Kind", "Range", "Made", "State", "Progress", "Rows", "Files", ""]);
        for (const j of r.reports) {
          const files = el("span", { class: "files" });
          if (j.state === "completed") {
            const base = `/api/v1/reports/${encodeURIComponent(j.id)}/download?format=`;
            if (!j.files || j.files.pdf) files.append(downloadLink("report-pdf", base + "pdf", `${j.name}.pdf`, "PDF"));
            if (!j.files || j.files.csv) files.append(" ", downloadLink("report-csv", base + "csv", `${j.name}.csv`, "CSV"));
          }
          const s = j.summary || {};
          t.tBodies[0].append(el("tr", { "data-testid": "report-row", "data-id": j.id, "data-status": j.state, class: j.state === "failed" ? "failure" : null },
            el("td", null, el("strong", null, j.name), el("div", { class: "muted" }, j.schedule ? "scheduled" : "by " + j.created_by.name)),
            el("td", null, title(j.report)),
            el("td", null, rangeText(j)),
            el("td", null, time(j.created_at, true)),
            el("td", null, TH.badge(j.state, "state state-" + j.state)),
            el("td", null, progress(j)),
            el("td", null, s.rows != null ? num(s.rows) + (s.cut ? " (cut)" : "") : "—"),
            el("td", null, files),
            el("td", { class: "actions" }, deleteButton("reports", j, load))));
        }
        fill(list, t);
      } catch (err) { if (live()) fill(list, TH.errorBox(err, load)); }
    }

    async function loadSchedules() {
      try {
        const r = await api("/api/v1/reports/schedules");
        if (!live()) return;
        if (!r.schedules.length) { fill(schedules, TH.empty("No report schedules.", "Add one above (admins).")); return; }
        const channelName = (id) => (channels.find((c) => c.id === id) || { name: id }).name;
        const t = TH.table({ id: "schedules" }, ["Name", "Kind", "Cron", "Covers", "Zone", "Channels", "Next run", "Last report", ""]);
        for (const s of r.schedules) {
          const del = el("button", { type: "button", class: "link danger" }, "Delete");
          del.addEventListener("click", async () => {
            if (!confirm(`Delete the schedule “${s.name}”?`)) return;
            try { await api("/api/v1/reports/schedules/" + encodeURIComponent(s.id), { method: "DELETE" }); loadSchedules(); } catch (err) { TH.flash(err.message, "error"); }
          });
          t.tBodies[0].append(el("tr", { "data-testid": "schedule-row", "data-id": s.id },
            el("td", null, s.name), el("td", null, s.kind), el("td", { class: "mono" }, s.cron), el("td", null, s.range),
            el("td", null, s.time_zone), el("td", null, s.channels.map(channelName).join(", ") || "—"),
            el("td", null, time(s.next_run)), el("td", null, s.last_report || "—"), el("td", { class: "actions" }, del)));
        }
        fill(schedules, t);
      } catch (err) { if (live()) fill(schedules, TH.errorBox(err, loadSchedules)); }
    }

    load();
    loadSchedules();
    refresher(load);
  };
})();
