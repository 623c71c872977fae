//! An observer that keeps every event in memory, for tests and the demo.

use parking_lot::Mutex;

use super::{AttemptReport, LogObserver, Observer, RequestEvent};

/// Keeps every event in memory: for tests and the demo.
#[derive(Debug, Default)]
pub struct RecordingObserver {
    attempts: Mutex<Vec<AttemptReport>>,
    requests: Mutex<Vec<RequestEvent>>,
}

impl RecordingObserver {
    pub fn events(&self) -> Vec<AttemptReport> {
        self.attempts.lock().clone()
    }

    pub fn requests(&self) -> Vec<RequestEvent> {
        self.requests.lock().clone()
    }
}

impl Observer for RecordingObserver {
    fn attempt(&self, event: &AttemptReport) {
        LogObserver.attempt(event);
        {
            let mut events = self.attempts.lock();
            events.push(event.clone());
        }
    }

    fn request(&self, event: &RequestEvent) {
        {
            let mut events = self.requests.lock();
            events.push(event.clone());
        }
    }
}
