//! Replay (SPEC §6 `[replay]`): a response that was paid for is given again instead of
//! being bought twice — to a repeat with the same `Idempotency-Key`, or to the OpenAI
//! SDK's own retry of a call whose client gave up on it.
//!
//! - `scope`: what a replay is keyed by (credential hash, method, path, key or body hash);
//! - `kept`: a kept response and its bytes on disk;
//! - `store`: the `ReplayStore` trait (get, put, claim while in flight, close);
//! - `marks`: in-flight markers in this process;
//! - `local`: the store on local disk (`store = "local"`); `fleet::replay` shares it
//!   through Redis (`store = "redis"`).
//!
//! The request-path step that uses them is `stack::replay`.

pub mod kept;
pub mod local;
pub mod marks;
pub mod scope;
pub mod store;

use std::sync::Arc;

use crate::config::{ReplaySettings, ReplayStoreKind};
use crate::fleet::Store;
use crate::fleet::replay::SharedReplay;

pub use kept::Kept;
pub use scope::{Credential, ReplayReason, ScopeKey};
pub use store::{Claim, InFlight, ReplayStore, Running};

/// Replay as the request path sees it: the settings and the store.
pub struct Replay {
    pub settings: ReplaySettings,
    pub store: Arc<dyn ReplayStore>,
}

impl Replay {
    /// Opens the configured store (the local one reads its index now); with
    /// `store = "redis"`, the local one shared through `fleet`.
    pub fn open(settings: &ReplaySettings, fleet: Option<&Arc<Store>>) -> Replay {
        let local: Arc<dyn ReplayStore> =
            Arc::new(local::LocalStore::open(&settings.dir, settings.max_bytes));
        let store = match (settings.store, fleet) {
            (ReplayStoreKind::Redis, Some(fleet)) => Arc::new(SharedReplay::new(local, fleet)),
            _ => local,
        };
        Replay {
            settings: settings.clone(),
            store,
        }
    }
}
