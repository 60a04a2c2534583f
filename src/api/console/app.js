// Trailhub console, the shell: sign-in, navigation and the hash router. Every view is a URL
// (#/dashboard, #/timeline?<filters>, #/events/<id>, #/actors/<id>, #/alerts, #/exports,
// #/reports, #/integrations, #/integrations/new), so back, forward and reload work.
"use strict";

(function () {
  const { $, $$, el, fill } = TH;

  // route → [nav view, render(main, argument)]
  function resolve(hash) {
    const h = hash.replace(/^#/, "");
    const [path, query] = [h.split("?")[0], h.includes("?") ? h.slice(h.indexOf("?") + 1) : ""];
    const parts = path.split("/").filter(Boolean);
    const arg = parts.slice(1).join("/");
    switch (parts[0]) {
      case "dashboard": return ["dashboard", TH.views.dashboard];
      case "timeline": return ["timeline", (m) => TH.views.timeline(m, query)];
      case "events": return arg ? ["timeline", (m) => TH.views.event(m, decodeURIComponent(arg))] : null;
      case "actors": return arg ? ["timeline", (m) => TH.views.actor(m, decodeURIComponent(arg))] : null;
      case "alerts": return ["alerts", TH.views.alerts];
      case "exports": return ["exports", TH.views.exports];
      case "reports": return ["reports", TH.views.reports];
      case "integrations": return arg === "new" ? ["integrations", TH.views.newIntegration] : ["integrations", TH.views.integrations];
      default: return null;
    }
  }

  TH.route = function () {
    // another tab may have signed in since
    if (!TH.token) TH.token = localStorage.getItem("trailhub.token") || "";
    if (!TH.token) { showLogin(""); return; }
    if (!location.hash || location.hash === "#" || location.hash === "#/") { location.replace("#/dashboard"); return; }
    TH.gen++;
    TH.stopTimers();
    // a view's passing notices leave with it (errors stay until read or timed out)
    for (const f of document.querySelectorAll("#flash .flash:not(.error)")) f.remove();
    window.onresize = null;
    const main = $("#app");
    $("#login").hidden = true;
    main.hidden = false;
    $("nav").hidden = false;
    $("#who").hidden = false;
    const found = resolve(location.hash);
    for (const b of $$("nav button[data-view]")) {
      const on = found && b.dataset.view === found[0];
      b.classList.toggle("active", Boolean(on));
      if (on) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
    }
    if (!found) {
      fill(main, el("div", { class: "view-head" }, el("h1", null, "Not found")),
        TH.empty("There is no view at " + location.hash + ".", null), TH.link("#/dashboard", "Go to the dashboard"));
      return;
    }
    main.replaceChildren(TH.loading());
    const titleView = found[0].charAt(0).toUpperCase() + found[0].slice(1);
    document.title = titleView + " · Trailhub";
    try {
      const done = found[1](main);
      if (done && done.catch) done.catch((err) => fill(main, TH.errorBox(err)));
    } catch (err) {
      fill(main, TH.errorBox(err));
    }
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  };

  function showLogin(message) {
    TH.gen++;
    TH.stopTimers();
    $("#app").hidden = true;
    $("#app").replaceChildren();
    $("nav").hidden = true;
    $("#who").hidden = true;
    $("#login").hidden = false;
    $("#login-error").textContent = message || "";
    $("#token").focus();
  }

  TH.signOut = function (message) {
    localStorage.removeItem("trailhub.token");
    TH.token = "";
    showLogin(message);
  };

  function start() {
    $("#zone").textContent = TH.zone + " (" + TH.zoneOffset() + ")";
    $("#zone").title = "Times are shown in this browser's time zone; hover a time for UTC.";
    $("#login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const candidate = $("#token").value.trim();
      const error = $("#login-error");
      if (!candidate) { error.textContent = "Paste a token first."; return; }
      error.textContent = "Checking…";
      let resp;
      try {
        resp = await fetch("/api/v1/summary", { headers: { Authorization: "Bearer " + candidate } });
      } catch (e) {
        error.textContent = "The hub did not answer: " + e.message;
        return;
      }
      if (resp.status === 401) { error.textContent = "The hub does not know this token (or it was revoked)."; return; }
      if (resp.status === 403) { error.textContent = "This token may only post events (role ingest); use a viewer or admin token."; return; }
      if (!resp.ok) { error.textContent = "The hub answered HTTP " + resp.status + "; try again."; return; }
      TH.token = candidate;
      localStorage.setItem("trailhub.token", candidate);
      $("#token").value = "";
      error.textContent = "";
      if (!location.hash || location.hash === "#" || location.hash === "#/") location.hash = "#/dashboard"; else TH.route();
    });
    for (const b of $$("nav button[data-view]")) b.addEventListener("click", () => TH.go("#/" + b.dataset.view));
    $("#sign-out").addEventListener("click", () => TH.signOut("Signed out. The token was removed from this browser."));
    window.addEventListener("hashchange", TH.route);
    TH.route();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
