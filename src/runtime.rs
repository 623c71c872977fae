//! Everything a request needs that comes from the config: swapped as a whole on SIGHUP,
//! so a request sees one consistent config from start to end.

use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::proxy::{UpstreamClient, client};
use crate::routing::Router;

pub struct Runtime {
    pub config: Arc<Config>,
    pub router: Router,
    pub client: UpstreamClient,
}

impl Runtime {
    /// Builds routing and the pooled upstream client; fails on unreadable CA files.
    pub fn new(config: Config) -> Result<Runtime, ConfigError> {
        let client = client::build(&config)?;
        let router = Router::new(&config.upstreams);
        Ok(Runtime {
            config: Arc::new(config),
            router,
            client,
        })
    }
}
