//! Which upstream serves a request: the longest matching `path_prefix`.
//!
//! Only the request path decides. Absolute-form URIs contribute their path alone, and
//! `Host` / `X-Forwarded-*` are never read, so backstop cannot be used as an open proxy.

use crate::config::Upstream;

/// Routes to a `T` per upstream (the runtime's: the upstream's `Hop` itself, so a
/// routed request needs no second lookup by name).
#[derive(Debug, Clone)]
pub struct Router<T> {
    /// The upstreams with a path route (not `fallback_only`) and their prefixes, sorted
    /// by prefix length, longest first.
    upstreams: Vec<(String, T)>,
}

impl<T> Router<T> {
    /// Routes to `target(upstream)` for each upstream with a `path_prefix`; one it
    /// gives `None` for is not routed to.
    pub fn new(
        upstreams: &[Upstream],
        mut target: impl FnMut(&Upstream) -> Option<T>,
    ) -> Router<T> {
        let mut upstreams: Vec<(String, T)> = upstreams
            .iter()
            .filter_map(|u| Some((u.path_prefix.clone()?, target(u)?)))
            .collect();
        upstreams.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Router { upstreams }
    }

    pub fn route(&self, path: &str) -> Option<&T> {
        self.upstreams
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(_, target)| target)
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

    fn router() -> Router<String> {
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
        by_name(&config.upstreams)
    }

    fn by_name(upstreams: &[Upstream]) -> Router<String> {
        Router::new(upstreams, |u| Some(u.name.clone()))
    }

    fn name(r: &Router<String>, path: &str) -> Option<String> {
        r.route(path).cloned()
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
        let r = by_name(&config.upstreams);
        assert!(r.route("/other").is_none());
        assert!(r.route("/v1/models").is_some());
    }
}
