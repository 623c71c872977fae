//! The retry engine's pure parts (SPEC §2): what is retryable (`classify`), how long to
//! wait (`backoff`, `server_delay`), whether the upstream can afford it (`budget`), the
//! per-request decision (`policy`) and the loop that applies it (`driver`), all naming
//! what happened with one typed `Reason`. Nothing here knows about the server or the
//! client; `stack::attempts` wires it to real requests.

pub mod backoff;
pub mod budget;
pub mod classify;
pub mod driver;
pub mod policy;
pub mod reason;
pub mod server_delay;

pub use budget::RetryBudget;
pub use classify::{Outcome, Retryable, TransportFailure};
pub use policy::{Decision, GiveUp, RetryPolicy};
pub use reason::Reason;
