//! Which upstream serves a request: the longest matching `path_prefix`.
//!
//! Only the request path decides. Absolute-form URIs contribute their path alone, and
//! `Host` / `X-Forwarded-*` are never read, so backstop cannot be used as an open proxy.

use std::sync::Arc;

use crate::config::Upstream;

#[derive(Debug, Clone)]
pub struct Router {
    /// The upstreams with a path route (not `fallback_only`) and their prefixes, sorted
    /// by prefix length, longest first.
    upstreams: Vec<(String, Arc<Upstream>)>,
}

impl Router {
    pub fn new(upstreams: &[Upstream]) -> Router {
        let mut upstreams: Vec<(String, Arc<Upstream>)> = upstreams
            .iter()
            .filter_map(|u| Some((u.path_prefix.clone()?, Arc::new(u.clone()))))
            .collect();
        upstreams.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Router { upstreams }
    }

    pub fn route(&self, path: &str) -> Option<&Arc<Upstream>> {
        self.upstreams
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(_, u)| u)
    }
}

/// SPEC: "requests whose path starts with this go here". A prefix with a trailing slash
/// also takes the bare path without it (`/openai/` serves `/openai`).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix) || prefix.strip_suffix('/').is_some_and(|p| p == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn router() -> Router {
        let text = r#"
            [[upstream]]
            name = "openai"
            base_url = "https://api.openai.com"
            [[upstream]]
            name = "azure"
            base_url = "https://r.openai.azure.com"
            path_prefix = "/openai/"
            [[upstream]]
            name = "azure-eu"
            base_url = "https://eu.openai.azure.com"
            path_prefix = "/openai/deployments/eu-"
        "#;
        let config = Config::from_toml(text, &|_| None).expect("valid");
        Router::new(&config.upstreams)
    }

    fn name(r: &Router, path: &str) -> Option<String> {
        r.route(path).map(|u| u.name.clone())
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router();
        assert_eq!(name(&r, "/v1/chat/completions").as_deref(), Some("openai"));
        assert_eq!(
            name(&r, "/openai/deployments/gpt4/chat/completions").as_deref(),
            Some("azure")
        );
        assert_eq!(
            name(&r, "/openai/deployments/eu-gpt4/chat/completions").as_deref(),
            Some("azure-eu")
        );
        assert_eq!(name(&r, "/openai").as_deref(), Some("azure"));
    }

    #[test]
    fn prefix_is_a_plain_string_prefix() {
        assert!(prefix_matches("/v1", "/v1/models"));
        assert!(prefix_matches("/v1/", "/v1"));
        assert!(!prefix_matches("/v1/", "/v10/models"));
        assert!(prefix_matches(
            "/openai/deployments/eu-",
            "/openai/deployments/eu-x/chat"
        ));
    }

    #[test]
    fn no_match_without_a_root_upstream() {
        let text = "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\npath_prefix=\"/v1/\"\n";
        let config = Config::from_toml(text, &|_| None).expect("valid");
        let r = Router::new(&config.upstreams);
        assert!(r.route("/other").is_none());
        assert!(r.route("/v1/models").is_some());
    }
}
