// Trailhub console, integrations: the list with each one's state (#/integrations, refreshed every
// few seconds) and the form that adds one (#/integrations/new), generated from the connector's
// declared fields. Credentials are write-only: inputs of type password, never pre-filled.
"use strict";

(function () {
  const { el, api, num, time, fill } = TH;

  const LOOPBACK = /^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(\/|$)/i;

  TH.views.integrations = function (main) {
    const live = TH.liveGuard();
    const list = el("div", { id: "integration-list" }, TH.loading("Loading integrations…"));
    fill(main, el("div", { class: "view-head" }, el("h1", null, "Integrations"),
      TH.link("#/integrations/new", "+ Add integration", { class: "button primary", "data-testid": "add-integration", role: "button" })),
    list);

    async function load() {
      try {
        const { integrations } = await api("/api/v1/integrations");
        if (!live()) return;
        if (!integrations.length) {
          fill(list, TH.empty("No integrations yet.", "Add one to collect a vendor's audit log; events posted to /api/v1/events arrive as “custom”."));
          return;
        }
        const t = TH.table({ id: "integrations" }, ["Name", "Connector", "State", "Events", "Lag", "Last poll", "Last success", "Next poll", "Last error", ""]);
        for (const i of integrations) {
          const poll = el("button", { type: "button", class: "link" }, "Poll now");
          poll.hidden = i.push_only || i.paused;
          poll.addEventListener("click", async () => {
            try { await api(`/api/v1/integrations/${encodeURIComponent(i.id)}/poll`, { method: "POST" }); TH.flash(`Polling ${i.name}.`, "ok"); } catch (err) { TH.flash(err.message, "error"); }
          });
          const pause = el("button", { type: "button", class: "link" }, i.paused ? "Resume" : "Pause");
          pause.addEventListener("click", async () => {
            try { await api(`/api/v1/integrations/${encodeURIComponent(i.id)}`, { method: "PATCH", body: { paused: !i.paused } }); load(); } catch (err) { TH.flash(err.message, "error"); }
          });
          const del = el("button", { type: "button", class: "link danger" }, "Delete");
          del.addEventListener("click", async () => {
            if (!confirm(`Stop collecting from “${i.name}”? Its ${num(i.events_ingested)} stored events are kept.`)) return;
            try { await api(`/api/v1/integrations/${encodeURIComponent(i.id)}`, { method: "DELETE" }); load(); } catch (err) { TH.flash(err.message, "error"); }
          });
          const backfill = i.state === "backfilling" && i.backfill_progress && i.backfill_progress.oldest_reached
            ? el("div", { class: "muted" }, "back to " + TH.shortTime(i.backfill_progress.oldest_reached)) : null;
          t.tBodies[0].append(el("tr", { "data-testid": "integration-row", "data-id": i.id, "data-events": i.events_ingested, "data-state": i.state, class: i.state === "error" ? "failure" : null },
            el("td", null, el("strong", null, TH.timelineLink({ integration: i.id }, i.name)), el("div", { class: "muted mono" }, i.id)),
            el("td", null, i.connector),
            el("td", null, TH.badge(i.state, "state state-" + i.state), i.polling ? el("span", { class: "muted" }, " polling…") : null, backfill),
            el("td", { class: "num", "data-value": i.events_ingested }, num(i.events_ingested), i.events_filtered ? el("div", { class: "muted" }, num(i.events_filtered) + " filtered") : null),
            el("td", null, i.lag_seconds == null ? "—" : TH.duration(i.lag_seconds)),
            el("td", null, time(i.last_poll_at, true)),
            el("td", null, time(i.last_success_at, true)),
            el("td", null, i.push_only ? el("span", { class: "muted" }, "pushed to /hooks/" + i.id) : (i.next_polls && i.next_polls.length ? time(i.next_polls[0], true) : "—")),
            el("td", { class: "wrap error" }, i.last_error || ""),
            el("td", { class: "actions" }, poll, pause, del)));
        }
        fill(list, t);
        if (TH.highlight) {
          const row = list.querySelector(`tr[data-id="${CSS.escape(TH.highlight)}"]`);
          if (row) row.classList.add("new");
        }
      } catch (err) { if (live()) fill(list, TH.errorBox(err, load)); }
    }
    load();
    TH.every(3000, load);
  };

  // --- the add form -------------------------------------------------------------------------

  function inputFor(kind, f) {
    const name = kind + "." + f.name;
    if (f.choices && f.choices.length) {
      const s = TH.select(name, f.choices, f.required ? undefined : "default" + (f.default ? " (" + f.default + ")" : ""));
      if (f.default) s.value = f.default;
      return s;
    }
    if (kind === "credentials") {
      // write-only: never pre-filled; a PEM key keeps its line breaks (a password input drops them)
      if (/\bPEM\b/.test(f.description || "")) {
        return el("textarea", { name, class: "secret", rows: 4, autocomplete: "off", spellcheck: "false", "aria-required": f.required ? "true" : null, placeholder: "-----BEGIN PRIVATE KEY-----" });
      }
      return el("input", { name, type: f.secret === false ? "text" : "password", autocomplete: f.secret === false ? "off" : "new-password", "aria-required": f.required ? "true" : null });
    }
    return el("input", { name, type: f.kind === "url" ? "url" : "text", autocomplete: "off", placeholder: f.default ? "default: " + f.default : (f.kind === "url" ? "https://" : null), "aria-required": f.required ? "true" : null });
  }

  TH.views.newIntegration = async function (main) {
    const live = TH.liveGuard();
    const box = el("div", null, TH.loading("Loading connectors…"));
    fill(main, TH.link("#/integrations", "← Integrations", { class: "back" }), el("div", { class: "view-head" }, el("h1", null, "Add an integration")), box);
    let connectors;
    try {
      connectors = (await api("/api/v1/connectors")).connectors;
    } catch (err) { if (live()) fill(box, TH.errorBox(err)); return; }
    if (!live()) return;
    connectors.sort((a, b) => a.title.localeCompare(b.title));

    const connector = TH.select("connector", connectors.map((c) => ({ value: c.name, label: `${c.title} (${c.name})` })), "Choose a connector…");
    const about = el("p", { class: "muted" });
    const configBox = el("fieldset", { class: "fields", hidden: true }, el("legend", null, "Connection"));
    const credBox = el("fieldset", { class: "fields", hidden: true }, el("legend", null, "Credentials (write-only: sealed at rest, never shown again)"));
    const insecure = el("input", { type: "checkbox", name: "allow_insecure_http" });
    const insecureField = el("label", { class: "check field wide", hidden: true }, insecure,
      " Allow plain http to this loopback host (a local proxy or a test double); anything else must be https",
      el("span", { class: "field-error", "data-error-for": "allow_insecure_http", hidden: true }));
    const result = el("div", { class: "test-result", "data-testid": "test-result", role: "status", hidden: true });
    const test = el("button", { type: "button", "data-testid": "test-connection" }, "Test connection");
    const form = el("form", { id: "integration-form", class: "stacked", autocomplete: "off", novalidate: true },
      el("div", { class: "fields" },
        TH.field("Connector", connector, { required: true }),
        TH.field("Name", "name", { required: true, placeholder: "acme-okta", help: "unique; shown in the timeline" }),
        TH.field("Schedule", "schedule", { placeholder: "connector default", help: "cron, 5 fields or 6 with seconds first" }),
        TH.field("Backfill", "backfill", { placeholder: "connector default", help: "how far back the first poll reaches (ISO 8601: P30D, PT12H)" })),
      about, configBox, insecureField, credBox,
      el("div", { class: "form-actions" }, test, el("button", { type: "submit", class: "primary" }, "Add integration")),
      result,
      el("p", { class: "form-error", "data-testid": "form-error", role: "alert", hidden: true }));
    fill(box, form);

    function render() {
      TH.clearErrors(form);
      result.hidden = true;
      const c = connectors.find((x) => x.name === connector.value);
      configBox.replaceChildren(configBox.firstChild);
      credBox.replaceChildren(credBox.firstChild);
      configBox.hidden = credBox.hidden = !c;
      insecureField.hidden = true;
      if (!c) { about.textContent = ""; return; }
      about.textContent = (c.webhook ? "Receives pushes at /hooks/<id>" : "") + (c.default_schedule ? (c.webhook ? "; polls" : "Polls") + " on “" + c.default_schedule + "” by default" : "") + (c.retention_days ? `; the vendor keeps ${c.retention_days} days` : "") + ".";
      form.elements.namedItem("schedule").placeholder = c.default_schedule || "push-only: no schedule";
      for (const f of c.config) configBox.append(TH.field(f.name, inputFor("config", f), { required: f.required, help: f.description, wide: f.kind === "url" }));
      for (const f of c.credentials) credBox.append(TH.field(f.name, inputFor("credentials", f), { required: f.required, help: f.description, wide: /\bPEM\b/.test(f.description || "") }));
      if (!c.config.length) configBox.hidden = true;
      if (!c.credentials.length) credBox.hidden = true;
    }
    connector.addEventListener("change", render);
    // plain http is offered (and ticked) only for a loopback URL the admin typed
    form.addEventListener("input", (ev) => {
      const t = ev.target;
      if (!t.name || !t.name.startsWith("config.") || t.type !== "url") return;
      const urls = TH.$$("input[type=url]", form).map((i) => i.value.trim());
      const loop = urls.some((u) => LOOPBACK.test(u));
      insecureField.hidden = !loop && !insecure.checked;
      if (loop) insecure.checked = true;
    });

    function body() {
      const b = { connector: connector.value, name: form.elements.namedItem("name").value.trim(), config: {}, credentials: {} };
      for (const k of ["schedule", "backfill"]) {
        const v = form.elements.namedItem(k).value.trim();
        if (v) b[k] = v;
      }
      for (const input of TH.$$("[name^='config.'], [name^='credentials.']", form)) {
        const [kind, ...rest] = input.name.split(".");
        const v = kind === "credentials" ? input.value : input.value.trim();
        if (v.trim()) b[kind][rest.join(".")] = v;
      }
      if (insecure.checked) b.allow_insecure_http = true;
      return b;
    }

    function precheck() {
      TH.clearErrors(form);
      if (!connector.value) { TH.fieldError(form, "connector", "choose the vendor to collect from"); return false; }
      if (!form.elements.namedItem("name").value.trim()) { TH.fieldError(form, "name", "is required"); return false; }
      return true;
    }

    test.addEventListener("click", async () => {
      if (!precheck()) return;
      result.hidden = false;
      result.className = "test-result loading";
      delete result.dataset.ok;
      result.textContent = "Testing: one request of the first page…";
      await TH.busy(form, async () => {
        try {
          const r = await api("/api/v1/integrations/test", { method: "POST", body: body() });
          result.dataset.ok = String(Boolean(r.ok));
          result.className = "test-result " + (r.ok ? "ok" : "bad");
          if (r.ok && r.push_only) result.textContent = "Nothing to request: " + r.message;
          else if (r.ok) result.textContent = `✓ Connected: HTTP ${r.status}, ${num(r.records)} record${r.records === 1 ? "" : "s"} on the first page${r.more ? " (more pages follow)" : ""}, in ${num(r.elapsed_ms)} ms.`;
          else result.textContent = `✗ Failed${r.status ? " (HTTP " + r.status + ")" : ""}: ${r.error}`;
        } catch (err) {
          result.dataset.ok = "false";
          result.className = "test-result bad";
          result.textContent = "Not tested: " + err.message;
          if (err.status !== 403) TH.showError(form, err);
        }
      });
    });

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!precheck()) return;
      await TH.busy(form, async () => {
        try {
          const created = await api("/api/v1/integrations", { method: "POST", body: body() });
          TH.highlight = created.id;
          setTimeout(() => { if (TH.highlight === created.id) TH.highlight = null; }, 4000);
          TH.flash(`Integration “${created.name}” added: ${created.push_only ? "its vendor can push to /hooks/" + created.id : "its first poll (the backfill) starts now"}.`, "ok");
          TH.go("#/integrations");
        } catch (err) { TH.showError(form, err); }
      });
    });
  };
})();
