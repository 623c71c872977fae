//! The three body sizes, which must agree: `retry_buffer_bytes` ≤ `max_body_bytes` and
//! ≤ `retry_buffer_total_bytes` (a body larger than the whole budget could never be
//! kept). A default that conflicts only with another value is adjusted down to it
//! (`max_body_bytes = 65536` alone lowers `retry_buffer_bytes` to 65536); a value the
//! user set that conflicts with another is refused, naming both keys.

use super::invalid;
use crate::config::ConfigError;

pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_RETRY_BUFFER_BYTES: u64 = 16 * 1024 * 1024;
pub const DEFAULT_RETRY_BUFFER_TOTAL_BYTES: u64 = 256 * 1024 * 1024;

/// The sizes in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub max_body_bytes: u64,
    pub retry_buffer_bytes: u64,
    pub retry_buffer_total_bytes: u64,
}

/// A size as the file gave it (`Some`) or not (`None`).
#[derive(Debug, Clone, Copy)]
struct Size {
    key: &'static str,
    set: Option<u64>,
    default: u64,
}

impl Size {
    fn value(self) -> u64 {
        self.set.unwrap_or(self.default)
    }
}

/// Resolves the sizes: `max_body_bytes`, `retry_buffer_bytes`, `retry_buffer_total_bytes`
/// as written (`None` = not in the file).
pub fn resolve(
    max_body: Option<u64>,
    buffer: Option<u64>,
    total: Option<u64>,
) -> Result<Sizes, ConfigError> {
    let max_body = Size {
        key: "max_body_bytes",
        set: max_body,
        default: DEFAULT_MAX_BODY_BYTES,
    };
    let buffer = Size {
        key: "retry_buffer_bytes",
        set: buffer,
        default: DEFAULT_RETRY_BUFFER_BYTES,
    };
    let total = Size {
        key: "retry_buffer_total_bytes",
        set: total,
        default: DEFAULT_RETRY_BUFFER_TOTAL_BYTES,
    };
    if max_body.value() == 0 {
        return Err(invalid(max_body.key, "must be greater than 0"));
    }
    let retry_buffer_bytes = match buffer.set {
        // Not set: the default, lowered to whatever caps it.
        None => buffer.default.min(max_body.value()).min(total.value()),
        Some(value) => {
            for cap in [max_body, total] {
                if value > cap.value() {
                    return Err(conflict(buffer, cap));
                }
            }
            value
        }
    };
    Ok(Sizes {
        max_body_bytes: max_body.value(),
        retry_buffer_bytes,
        retry_buffer_total_bytes: total.value(),
    })
}

/// `small` (set by the user) is larger than `cap` allows.
fn conflict(small: Size, cap: Size) -> ConfigError {
    let cap_origin = if cap.set.is_some() {
        "set to"
    } else {
        "default"
    };
    invalid(
        small.key,
        format!(
            "`{}` = {} must be at most `{}` ({cap_origin} {}); lower `{}` or raise `{}`",
            small.key,
            small.value(),
            cap.key,
            cap.value(),
            small.key,
            cap.key
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(m: Option<u64>, b: Option<u64>, t: Option<u64>) -> Sizes {
        resolve(m, b, t).expect("valid sizes")
    }

    #[test]
    fn defaults_are_the_spec_values() {
        assert_eq!(
            sizes(None, None, None),
            Sizes {
                max_body_bytes: 64 << 20,
                retry_buffer_bytes: 16 << 20,
                retry_buffer_total_bytes: 256 << 20,
            }
        );
    }

    #[test]
    fn a_default_buffer_is_lowered_to_a_smaller_max_body_or_budget() {
        assert_eq!(sizes(Some(65536), None, None).retry_buffer_bytes, 65536);
        assert_eq!(sizes(None, None, Some(1000)).retry_buffer_bytes, 1000);
    }

    #[test]
    fn a_set_buffer_above_a_cap_is_refused_naming_both_keys() {
        for (m, t) in [(Some(100), None), (None, Some(100)), (Some(100), Some(50))] {
            let err = resolve(m, Some(200), t).expect_err("conflict");
            assert_eq!(err.key(), Some("retry_buffer_bytes"));
            let text = err.to_string();
            assert!(text.contains("`retry_buffer_bytes`"), "{text}");
            let other = if m.is_some() {
                "`max_body_bytes`"
            } else {
                "`retry_buffer_total_bytes`"
            };
            assert!(text.contains(other), "{text}");
        }
    }

    #[test]
    fn zero_max_body_is_refused() {
        assert_eq!(
            resolve(Some(0), None, None).expect_err("zero").key(),
            Some("max_body_bytes")
        );
    }
}
