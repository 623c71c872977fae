//! The fleet store's health (SPEC §8): `backstop_redis_up`,
//! `backstop_redis_errors_total`, `backstop_redis_command_duration_seconds`.
//! Registered only with `[redis]`, so a config without it shows no Redis families
//! (and alerts on `backstop_redis_up == 0` never fire for it). No labels.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use serde::Serialize;

use crate::fleet::Health;

/// Redis commands take ~0.1-1 ms on a LAN; `timeout` defaults to 100 ms.
const COMMAND_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Clone)]
pub struct RedisFamilies {
    up: IntGauge,
    errors: IntCounter,
    duration: Histogram,
}

/// `/stats`' `redis` object: whether limits are shared right now.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RedisView {
    pub up: bool,
    pub errors: u64,
}

impl RedisFamilies {
    pub fn register(r: &Registry) -> prometheus::Result<RedisFamilies> {
        let up = IntGauge::new(
            "backstop_redis_up",
            "1 while the shared-state Redis answers in time, 0 while this replica decides locally.",
        )?;
        let errors = IntCounter::new(
            "backstop_redis_errors_total",
            "Redis commands that failed or took longer than redis.timeout (each decided locally).",
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "backstop_redis_command_duration_seconds",
                "Redis commands (one per admission), from sending to the answer or the timeout.",
            )
            .buckets(COMMAND_BUCKETS.to_vec()),
        )?;
        r.register(Box::new(up.clone()))?;
        r.register(Box::new(errors.clone()))?;
        r.register(Box::new(duration.clone()))?;
        Ok(RedisFamilies {
            up,
            errors,
            duration,
        })
    }

    pub fn view(&self) -> RedisView {
        RedisView {
            up: self.up.get() == 1,
            errors: self.errors.get(),
        }
    }
}

impl Health for RedisFamilies {
    fn command(&self, took: Duration, ok: bool) {
        self.duration.observe(took.as_secs_f64());
        if !ok {
            self.errors.inc();
        }
    }

    fn up(&self, up: bool) {
        self.up.set(i64::from(up));
    }
}
