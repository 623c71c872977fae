//! Clock readings handed on. A step that read the clock and then did not wait hands
//! its reading to the next, which takes it as "now" instead of reading the clock again:
//! a body that arrived with its head was read when the request started
//! (`RequestBody::read`), and that is when it is admitted and its first attempt starts,
//! unless admitting it waited (`Call::fresh`). Each read saved is ~40 instructions; the
//! request path would read the clock a dozen times.

use tokio::time::Instant;

/// `reading` if nothing has waited since it was taken, else the clock read now.
pub(super) fn now_or(reading: Option<Instant>) -> Instant {
    reading.unwrap_or_else(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_reading_is_used_only_when_given() {
        let then = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(now_or(Some(then)), then);
        assert_eq!(now_or(None), then + Duration::from_secs(3));
    }
}
