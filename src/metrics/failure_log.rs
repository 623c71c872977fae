//! A daily log's three counters (the failure log's, the request journal's), read when
//! scraped. Each log keeps its own counts (it knows nothing of Prometheus); it hands
//! `Recorder::attach_failure_log` / `attach_journal` an object that can read them.
//! Until one is attached (no `[journal]`, say) the counters read 0.

use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Metric, MetricFamily, MetricType};

/// What a daily log has done since start (monotonic counts).
pub trait FailureLogCounts: Send + Sync + 'static {
    /// Records written to the file (reached the OS).
    fn records_written(&self) -> u64;
    /// Records dropped because the writer's queue was full.
    fn records_dropped(&self) -> u64;
    /// Write, fsync or rotation errors (full or read-only disk, …).
    fn write_errors(&self) -> u64;
}

type Source = Arc<RwLock<Option<Arc<dyn FailureLogCounts>>>>;

/// A `Collector` for one log's three families: written, dropped, errors.
#[derive(Clone)]
pub struct FailureLogCollector {
    descs: [Desc; 3],
    source: Source,
}

/// Names and help of a log's three families: written, dropped, errors.
pub type Families = [(&'static str, &'static str); 3];

pub const FAILURE_LOG: Families = [
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

pub const JOURNAL: Families = [
    (
        "backstop_journal_records_total",
        "Request records written to the journal.",
    ),
    (
        "backstop_journal_records_dropped_total",
        "Journal records dropped (the writer could not keep up, or the write failed).",
    ),
    (
        "backstop_journal_errors_total",
        "Errors writing the journal (full or read-only disk, …); proxying goes on.",
    ),
];

impl FailureLogCollector {
    pub fn new(families: Families) -> prometheus::Result<FailureLogCollector> {
        let desc = |(name, help): (&str, &str)| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                Vec::new(),
                Default::default(),
            )
        };
        Ok(FailureLogCollector {
            descs: [desc(families[0])?, desc(families[1])?, desc(families[2])?],
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
