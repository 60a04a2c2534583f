//! Prometheus metrics of the hub, served at `/metrics`

use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub integration: String,
    /// `stored`, `nudged`, or the rejection code (`bad_signature`, `stale_timestamp`, ...).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabels {
    pub integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub integration: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub events_ingested: Family<IntegrationLabels, Counter>,
    pub events_duplicate: Family<IntegrationLabels, Counter>,
    pub lines_rejected: Family<IntegrationLabels, Counter>,
    pub upstream_responses: Family<UpstreamLabels, Counter>,
    pub rate_limit_waits: Family<IntegrationLabels, Counter>,
    pub records_rejected: Family<IntegrationLabels, Counter>,
    pub poll_duration: Family<IntegrationLabels, Histogram>,
    pub poll_errors: Family<IntegrationLabels, Counter>,
    pub lag_seconds: Family<IntegrationLabels, Gauge>,
    pub webhook_deliveries: Family<WebhookLabels, Counter>,
    pub webhooks_in_flight: Gauge,
    pub http_connections_open: Gauge,
    pub http_connections_refused: Counter,
}

fn poll_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "trailhub_http_requests",
            "HTTP requests answered, by route and status",
            http_requests.clone(),
        );
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "trailhub_http_request_duration_seconds",
            "Time to answer an HTTP request (until the headers)",
            http_duration.clone(),
        );
        let events_ingested = Family::<IntegrationLabels, Counter>::default();
        registry.register(
            "trailhub_events_ingested",
            "Events stored, by integration",
            events_ingested.clone(),
        );
        let events_duplicate = Family::<IntegrationLabels, Counter>::default();
        registry.register(
            "trailhub_events_duplicate",
            "Events received again and not stored twice, by integration",
            events_duplicate.clone(),
        );
        let lines_rejected = Family::<IntegrationLabels, Counter>::default();
        registry.register(
            "trailhub_ingest_lines_rejected",
            "Posted lines rejected by validation, by integration",
            lines_rejected.clone(),
        );
        let upstream_responses = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "trailhub_upstream_responses",
            "Vendor API responses, by integration and HTTP status",
            upstream_responses.clone(),
        );
        let rate_limit_waits = Family::<IntegrationLabels, Counter>::default();
        registry.register(
            "trailhub_rate_limit_waits",
            "Waits imposed by a vendor rate limit (429, 403 with a limit signal, 503 with Retry-After)",
            rate_limit_waits.clone(),
        );
        let records_rejected = Family::<IntegrationLabels, Counter>::default();
        registry.register(
            "trailhub_records_rejected",
            "Vendor records that could not be normalised (no readable time), by integration",
            records_rejected.clone(),
        );
        let poll_duration = Family::<IntegrationLabels, Histogram>::new_with_constructor(
            poll_histogram as fn() -> Histogram,
        );
        registry.register(
            "trailhub_poll_duration_seconds",
            "Duration of a poll cycle, by integration",
            poll_duration.clone(),
        );
        let poll_errors = Family::<IntegrationLabels, Counter>::default();
        registry.register(
            "trailhub_poll_errors",
            "Poll cycles that ended in error, by integration",
            poll_errors.clone(),
        );
        let lag_seconds = Family::<IntegrationLabels, Gauge>::default();
        registry.register(
            "trailhub_integration_lag_seconds",
            "Seconds since the integration last caught up with its vendor",
            lag_seconds.clone(),
        );
        let webhook_deliveries = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "trailhub_webhook_deliveries",
            "Webhook deliveries by integration and result (stored, nudged, or why rejected)",
            webhook_deliveries.clone(),
        );
        let webhooks_in_flight = Gauge::default();
        registry.register(
            "trailhub_webhook_deliveries_in_flight",
            "Webhook deliveries being read and verified now (bounded by webhook_concurrency)",
            webhooks_in_flight.clone(),
        );
        let http_connections_open = Gauge::default();
        registry.register(
            "trailhub_http_connections_open",
            "HTTP connections being served (bounded by max_connections)",
            http_connections_open.clone(),
        );
        let http_connections_refused = Counter::default();
        registry.register(
            "trailhub_http_connections_refused",
            "HTTP connections refused because max_connections were open",
            http_connections_refused.clone(),
        );
        Metrics {
            registry,
            webhooks_in_flight,
            http_connections_open,
            http_connections_refused,
            webhook_deliveries,
            upstream_responses,
            rate_limit_waits,
            records_rejected,
            poll_duration,
            poll_errors,
            lag_seconds,
            http_requests,
            http_duration,
            events_ingested,
            events_duplicate,
            lines_rejected,
        }
    }

    /// The text exposition, with the store's own counters read at scrape time.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        let body = out.strip_suffix("# EOF\n").unwrap_or(&out).to_string();
        let s = store.stats();
        let mut extra = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let sample = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            extra.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{sample} {value}\n"
            ));
        };
        line(
            "trailhub_store_events",
            "gauge",
            "Events in the store",
            store.event_count().to_string(),
        );
        line(
            "trailhub_store_disk_bytes",
            "gauge",
            "Bytes the store occupies on disk",
            store.size_on_disk().to_string(),
        );
        line(
            "trailhub_store_batches",
            "counter",
            "Atomic write batches applied",
            s.batches.load(Ordering::Relaxed).to_string(),
        );
        line(
            "trailhub_store_flushes",
            "counter",
            "Flushes to disk (one serves every request waiting)",
            s.flushes.load(Ordering::Relaxed).to_string(),
        );
        line(
            "trailhub_store_log_keys",
            "counter",
            "Keys written to the event log (events, dedup keys, heads)",
            s.log_keys.load(Ordering::Relaxed).to_string(),
        );
        line(
            "trailhub_store_index_keys",
            "counter",
            "Keys written to the index (posting blocks, rollups, watermarks)",
            s.index_keys.load(Ordering::Relaxed).to_string(),
        );
        line(
            "trailhub_store_flush_seconds",
            "counter",
            "Total time spent flushing",
            format!("{:.6}", s.flush_micros.load(Ordering::Relaxed) as f64 / 1e6),
        );
        format!("{body}{extra}# EOF\n")
    }
}
