//! The gateway's metrics, served at `/metrics` in Prometheus text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use steme_client::Ack;

use crate::error::HttpError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Every metric, and the registry that prints them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    seconds: Family<RouteLabels, Histogram>,
    records: Family<ResultLabels, Counter>,
    records_read: Counter,
    streams: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Holds a stream counted open; dropping it counts it closed.
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to about 65 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 18))
        });
        let records = Family::<ResultLabels, Counter>::default();
        let records_read = Counter::default();
        let streams = Gauge::default();
        let mut registry = Registry::with_prefix("steme_gateway");
        registry.register(
            "requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "request_seconds",
            "Time to answer a request (a stream: to open it), by route",
            seconds.clone(),
        );
        registry.register(
            "records",
            "Posted records: stored, duplicate (stored before), or rejected (invalid: its request stored nothing)",
            records.clone(),
        );
        registry.register(
            "records_read",
            "Records served by reads and streams",
            records_read.clone(),
        );
        registry.register(
            "streams",
            "Server-Sent Events streams open",
            streams.clone(),
        );
        Metrics {
            registry,
            requests,
            seconds,
            records,
            records_read,
            streams,
        }
    }

    /// A request answered.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.seconds
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Records acknowledged.
    pub fn stored(&self, acks: &[Ack]) {
        let duplicates = acks.iter().filter(|a| a.duplicate).count() as u64;
        self.count("duplicate", duplicates);
        self.count("stored", acks.len() as u64 - duplicates);
    }

    /// A post refused because of its records: the bad ones.
    pub fn rejected(&self, e: &HttpError) {
        self.count("rejected", e.bad_records() as u64);
    }

    fn count(&self, result: &'static str, n: u64) {
        self.records
            .get_or_create(&ResultLabels { result })
            .inc_by(n);
    }

    /// Records served.
    pub fn read(&self, n: usize) {
        self.records_read.inc_by(n as u64);
    }

    /// A stream opened; counted closed when the guard drops.
    pub fn stream_opened(&self) -> OpenStream {
        self.streams.inc();
        OpenStream(self.streams.clone())
    }

    /// The Prometheus text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
