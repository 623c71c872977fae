//! The failure log's three counters, read when scraped. The failure log keeps its own
//! counts (it knows nothing of Prometheus); it hands `Recorder::attach_failure_log` an
//! object that can read them. Until one is attached the counters read 0.

use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Metric, MetricFamily, MetricType};

/// What the failure log has done since start (monotonic counts).
pub trait FailureLogCounts: Send + Sync + 'static {
    /// Records written to the file (reached the OS).
    fn records_written(&self) -> u64;
    /// Records dropped because the writer's queue was full.
    fn records_dropped(&self) -> u64;
    /// Write, fsync or rotation errors (full or read-only disk, …).
    fn write_errors(&self) -> u64;
}

type Source = Arc<RwLock<Option<Arc<dyn FailureLogCounts>>>>;

/// A `Collector` for `backstop_failure_records_total`, `…_dropped_total` and
/// `backstop_failure_log_errors_total`.
#[derive(Clone)]
pub struct FailureLogCollector {
    descs: [Desc; 3],
    source: Source,
}

const FAMILIES: [(&str, &str); 3] = [
    (
        "backstop_failure_records_total",
        "Failure records written to the failure log.",
    ),
    (
        "backstop_failure_records_dropped_total",
        "Failure records dropped (the writer could not keep up).",
    ),
    (
        "backstop_failure_log_errors_total",
        "Errors writing the failure log (full or read-only disk, …); proxying goes on.",
    ),
];

impl FailureLogCollector {
    pub fn new() -> prometheus::Result<FailureLogCollector> {
        let desc = |(name, help): (&str, &str)| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                Vec::new(),
                Default::default(),
            )
        };
        Ok(FailureLogCollector {
            descs: [desc(FAMILIES[0])?, desc(FAMILIES[1])?, desc(FAMILIES[2])?],
            source: Arc::default(),
        })
    }

    pub fn attach(&self, counts: Arc<dyn FailureLogCounts>) {
        if let Ok(mut source) = self.source.write() {
            *source = Some(counts);
        }
    }

    fn values(&self) -> [u64; 3] {
        match self.source.read().ok().as_deref().and_then(Option::as_ref) {
            Some(c) => [c.records_written(), c.records_dropped(), c.write_errors()],
            None => [0; 3],
        }
    }
}

impl Collector for FailureLogCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.descs
            .iter()
            .zip(self.values())
            .map(|(desc, value)| {
                let mut counter = Counter::default();
                counter.set_value(value as f64);
                let mut metric = Metric::default();
                metric.set_counter(counter);
                let mut family = MetricFamily::default();
                family.set_name(desc.fq_name.clone());
                family.set_help(desc.help.clone());
                family.set_field_type(MetricType::COUNTER);
                family.set_metric(vec![metric]);
                family
            })
            .collect()
    }
}
