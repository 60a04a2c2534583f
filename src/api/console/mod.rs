//! The web console: static files compiled into the binary, a thin client of the JSON API (the
//! browser holds the token and calls the same endpoints as scripts and the CLI). Views, routes
//! and selectors: docs/CONSOLE.md.

use axum::http::header;
use axum::response::{IntoResponse, Redirect};

use super::Routes;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file the console serves: its path, content type and body. The scripts load in the
/// order index.html lists them (core first, the router last).
const ASSETS: &[(&str, &str, &str)] = &[
    ("/console", HTML, include_str!("index.html")),
    ("/console/app.css", CSS, include_str!("app.css")),
    ("/console/core.js", JS, include_str!("core.js")),
    ("/console/chart.js", JS, include_str!("chart.js")),
    ("/console/events.js", JS, include_str!("events.js")),
    ("/console/desk.js", JS, include_str!("desk.js")),
    (
        "/console/integrations.js",
        JS,
        include_str!("integrations.js"),
    ),
    ("/console/app.js", JS, include_str!("app.js")),
];

/// Scripts and styles only from the hub itself (no inline script or style); the page cannot be
/// framed.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Routes<S> {
    let mut routes = Routes::new().get("/", || async { Redirect::temporary("/console") });
    for &(path, content_type, body) in ASSETS {
        routes = routes.get(path, move || async move { asset(content_type, body) });
    }
    routes
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}
