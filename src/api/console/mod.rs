//! The web console: three static files compiled into the binary, a thin client of the JSON API
//! (the browser holds the token and calls the same endpoints as scripts and the CLI)

use axum::http::header;
use axum::response::{IntoResponse, Redirect};

use super::Routes;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// Scripts and styles only from the hub itself; the page cannot be framed.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Routes<S> {
    Routes::new()
        .get("/", || async { Redirect::temporary("/console") })
        .get("/console", || async {
            asset("text/html; charset=utf-8", INDEX)
        })
        .get("/console/app.js", || async {
            asset("text/javascript; charset=utf-8", APP_JS)
        })
        .get("/console/app.css", || async {
            asset("text/css; charset=utf-8", APP_CSS)
        })
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
