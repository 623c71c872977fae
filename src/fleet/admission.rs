//! One admission in one round trip: a Lua script that checks the shared circuit, the
//! shared pause and both GCRA limits on the server's clock (`TIME`), so replicas'
//! clocks never matter and no two replicas can take the same slot.
//!
//! GCRA with reservations: each limit keeps a theoretical arrival time (TAT, µs). A
//! request of cost `c` would move it to `max(TAT, now) + c·interval`; it may go once
//! that is at most `burst·interval` ahead of now. If it must wait, and the wait fits
//! the request's remaining queue time, the script reserves the slot (moves the TAT)
//! and answers how long to wait; otherwise it reserves nothing and answers how long
//! it would have been. Reservations are taken in the order Redis runs the scripts,
//! so waiting is FIFO across the whole fleet and the fleet never exceeds the rate.
//!
//! This file is pure: key names, arguments and the reading of the answer.

use std::time::Duration;

/// The keys of one upstream, all `<key_prefix><upstream name>:<what>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Exists (with PX = `open_for`) while the circuit is open.
    pub circuit_open: String,
    /// Exists from opening until a probe closes it: past `circuit_open`'s expiry, the
    /// circuit is half-open.
    pub circuit_half_open: String,
    /// The probe's claim (SET NX PX `open_for`): one replica sends it.
    pub circuit_probe: String,
    /// Exists while the upstream asked for a pause (a 429's delay, tokens spent).
    pub pause: String,
    pub requests: String,
    pub tokens: String,
}

impl Keys {
    pub fn new(prefix: &str, upstream: &str) -> Keys {
        let key = |what: &str| format!("{prefix}{upstream}:{what}");
        Keys {
            circuit_open: key("circuit:open"),
            circuit_half_open: key("circuit:half_open"),
            circuit_probe: key("circuit:probe"),
            pause: key("pause"),
            requests: key("rpm"),
            tokens: key("tpm"),
        }
    }
}

/// One GCRA limit as the script takes it: µs per unit and the burst in µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub interval_us: f64,
    pub burst_us: f64,
}

impl Shape {
    /// `per_minute` units per minute, `burst` of them at once.
    pub fn per_minute(per_minute: u32, burst: u32) -> Shape {
        let interval_us = 60e6 / f64::from(per_minute.max(1));
        Shape {
            interval_us,
            burst_us: interval_us * f64::from(burst.max(1)),
        }
    }
}

/// What the script decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go after `wait` (a reserved slot); `probe`: this request is the circuit's probe.
    Admitted { wait: Duration, probe: bool },
    /// The limits would make it wait `retry_after`, more than it may: nothing reserved.
    RateLimited { retry_after: Duration },
    /// The circuit is open (or half-open with its probe out) for `retry_after` more.
    CircuitOpen { retry_after: Duration },
}

impl Verdict {
    /// Reads the script's `{code, µs}` answer; `None` for anything else.
    pub fn from_reply(reply: &[i64]) -> Option<Verdict> {
        let [code, us] = *reply else {
            return None;
        };
        let time = Duration::from_micros(u64::try_from(us).unwrap_or(0));
        match code {
            1 => Some(Verdict::Admitted {
                wait: time,
                probe: false,
            }),
            4 => Some(Verdict::Admitted {
                wait: time,
                probe: true,
            }),
            2 => Some(Verdict::RateLimited { retry_after: time }),
            3 => Some(Verdict::CircuitOpen { retry_after: time }),
            _ => None,
        }
    }
}

/// KEYS: 1 circuit open, 2 half-open, 3 probe, 4 pause, 5 requests TAT, 6 tokens TAT.
/// ARGV: 1 breaker (0/1), 2 open_for ms, 3 longest wait µs, then for requests and for
/// tokens: interval µs, burst µs, cost (0: no such limit).
/// Answers `{1, wait µs}` admitted, `{4, wait µs}` admitted as the probe,
/// `{2, wait µs}` rate limited, `{3, µs}` circuit open.
pub const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local breaker = ARGV[1] == '1'
if breaker then
  local open = redis.call('PTTL', KEYS[1])
  if open > 0 then return {3, open * 1000} end
end
local wait = 0
local pause = redis.call('PTTL', KEYS[4])
if pause > 0 then wait = pause * 1000 end
local tats = {}
for i = 0, 1 do
  local cost = tonumber(ARGV[6 + i * 3])
  if cost > 0 then
    local interval = tonumber(ARGV[4 + i * 3])
    local burst = tonumber(ARGV[5 + i * 3])
    local tat = tonumber(redis.call('GET', KEYS[5 + i]) or '0') or 0
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    local w = new_tat - now - burst
    if w > wait then wait = w end
    tats[5 + i] = new_tat
  end
end
if wait > tonumber(ARGV[3]) then return {2, wait} end
local code = 1
if breaker and redis.call('EXISTS', KEYS[2]) == 1 then
  if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then
    local left = redis.call('PTTL', KEYS[3])
    if left < 1 then left = 1 end
    return {3, left * 1000}
  end
  code = 4
end
for k, tat in pairs(tats) do
  local ttl = math.floor((tat - now) / 1000) + 1000
  redis.call('SET', KEYS[k], string.format('%.0f', tat), 'PX', ttl)
end
return {code, wait}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_prefix_then_the_upstream_name() {
        let keys = Keys::new("backstop:", "openai");
        assert_eq!(keys.requests, "backstop:openai:rpm");
        assert_eq!(keys.tokens, "backstop:openai:tpm");
        assert_eq!(keys.circuit_open, "backstop:openai:circuit:open");
        assert_eq!(keys.circuit_probe, "backstop:openai:circuit:probe");
        assert_eq!(keys.pause, "backstop:openai:pause");
        assert_eq!(Keys::new("", "a").requests, "a:rpm");
    }

    #[test]
    fn a_shape_is_the_interval_and_the_burst_in_microseconds() {
        let s = Shape::per_minute(600, 10);
        assert_eq!(s.interval_us, 100_000.0);
        assert_eq!(s.burst_us, 1_000_000.0);
    }

    #[test]
    fn replies_are_read_strictly() {
        assert_eq!(
            Verdict::from_reply(&[1, 0]),
            Some(Verdict::Admitted {
                wait: Duration::ZERO,
                probe: false
            })
        );
        assert_eq!(
            Verdict::from_reply(&[4, 1500]),
            Some(Verdict::Admitted {
                wait: Duration::from_micros(1500),
                probe: true
            })
        );
        assert_eq!(
            Verdict::from_reply(&[2, 250_000]),
            Some(Verdict::RateLimited {
                retry_after: Duration::from_millis(250)
            })
        );
        assert_eq!(
            Verdict::from_reply(&[1, -5]),
            Some(Verdict::Admitted {
                wait: Duration::ZERO,
                probe: false
            }),
            "a slot already due is no wait"
        );
        assert_eq!(Verdict::from_reply(&[9, 0]), None);
        assert_eq!(Verdict::from_reply(&[1]), None);
    }
}
