//! The one way a route joins the router: `Routes` adds each handler to the axum router and
//! writes its (path, method) into the route table in the same call, so the table cannot drift
//! from what is served. The route × role test covers exactly that table: a route added without
//! its row there fails the test. (`axum::Router::route` is banned in `clippy.toml` for this.)

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter};
use axum::Router;

/// A path template as axum writes it (`/api/v1/integrations/{id}`) and one method it answers.
pub type RouteEntry = (&'static str, Method);

/// A router under construction, with the table of what it serves.
pub struct Routes<S> {
    router: Router<S>,
    table: Vec<RouteEntry>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Routes<S> {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    /// `handler` answers `method` on `path` (a GET also answers HEAD, as axum's `get` does).
    #[allow(clippy::disallowed_methods)] // the one place routes are added
    fn add<H, T>(
        mut self,
        path: &'static str,
        method: Method,
        filter: MethodFilter,
        handler: H,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        debug_assert!(
            !self.table.contains(&(path, method.clone())),
            "{method} {path} is added twice"
        );
        self.router = self.router.route(path, on(filter, handler));
        self.table.push((path, method));
        self
    }

    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(path, Method::GET, MethodFilter::GET, handler)
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(path, Method::POST, MethodFilter::POST, handler)
    }

    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(path, Method::PUT, MethodFilter::PUT, handler)
    }

    pub fn patch<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(path, Method::PATCH, MethodFilter::PATCH, handler)
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(path, Method::DELETE, MethodFilter::DELETE, handler)
    }

    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    pub fn into_parts(self) -> (Router<S>, Vec<RouteEntry>) {
        (self.router, self.table)
    }
}
