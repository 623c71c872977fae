//! Counts of the load backstop is under, read when scraped: client connections refused
//! at `max_connections`, and the retry-buffer budget (bytes held, bodies streamed once
//! for lack of it). The server and the request path keep these counts themselves (they
//! know nothing of Prometheus) and hand `Recorder::attach_load` an object that reads
//! them. Until one is attached every value reads 0.

use std::sync::Arc;

use parking_lot::RwLock;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};

/// What the server and the retry-buffer budget have counted.
pub trait LoadCounts: Send + Sync + 'static {
    /// Client connections closed unanswered at `max_connections` (monotonic).
    fn connections_refused(&self) -> u64;
    /// Bytes of request bodies kept for replay now.
    fn retry_buffer_bytes(&self) -> u64;
    /// Bodies streamed once because the budget was spent (monotonic).
    fn retry_buffer_exhausted(&self) -> u64;
}

const FAMILIES: [(&str, &str, MetricType); 3] = [
    (
        "backstop_connections_refused_total",
        "Client connections closed unanswered because max_connections were open.",
        MetricType::COUNTER,
    ),
    (
        "backstop_retry_buffer_bytes",
        "Bytes of request bodies kept in memory for retries now (retry_buffer_total_bytes bounds it).",
        MetricType::GAUGE,
    ),
    (
        "backstop_retry_buffer_exhausted_total",
        "Request bodies sent once, not retryable, because retry_buffer_total_bytes was spent.",
        MetricType::COUNTER,
    ),
];

type Source = Arc<RwLock<Option<Arc<dyn LoadCounts>>>>;

/// A `Collector` for the three families above.
#[derive(Clone)]
pub struct LoadCollector {
    descs: [Desc; 3],
    source: Source,
}

impl LoadCollector {
    pub fn new() -> prometheus::Result<LoadCollector> {
        let desc = |(name, help, _): (&str, &str, MetricType)| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                Vec::new(),
                Default::default(),
            )
        };
        Ok(LoadCollector {
            descs: [desc(FAMILIES[0])?, desc(FAMILIES[1])?, desc(FAMILIES[2])?],
            source: Arc::default(),
        })
    }

    pub fn attach(&self, counts: Arc<dyn LoadCounts>) {
        *self.source.write() = Some(counts);
    }

    fn values(&self) -> [u64; 3] {
        match self.source.read().as_ref() {
            Some(c) => [
                c.connections_refused(),
                c.retry_buffer_bytes(),
                c.retry_buffer_exhausted(),
            ],
            None => [0; 3],
        }
    }
}

impl Collector for LoadCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.descs
            .iter()
            .zip(FAMILIES)
            .zip(self.values())
            .map(|((desc, (_, _, kind)), value)| {
                let mut metric = Metric::default();
                if kind == MetricType::GAUGE {
                    let mut gauge = Gauge::default();
                    gauge.set_value(value as f64);
                    metric.set_gauge(gauge);
                } else {
                    let mut counter = Counter::default();
                    counter.set_value(value as f64);
                    metric.set_counter(counter);
                }
                let mut family = MetricFamily::default();
                family.set_name(desc.fq_name.clone());
                family.set_help(desc.help.clone());
                family.set_field_type(kind);
                family.set_metric(vec![metric]);
                family
            })
            .collect()
    }
}
