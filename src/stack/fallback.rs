//! Fallback upstreams: when a request goes on to the next one, and with what path.
//! (Which ones, in what order: `Runtime::chain`.)

use crate::config::{Upstream, UpstreamKind};
use crate::retry::{GiveUp, Reason};

/// Whether a request an upstream gave up on goes on to the next fallback: only when the
/// failure was the upstream's (retries or budget spent on retryable failures, a delay
/// too long to wait, an open circuit) — never for a 400 or a quota error.
pub(super) fn falls_back(give_up: Option<GiveUp>, reason: Reason) -> bool {
    matches!(
        give_up,
        Some(GiveUp::RetriesExhausted | GiveUp::BudgetExhausted | GiveUp::ServerDelayTooLong)
    ) || reason == Reason::CircuitOpen
}

/// For a fallback to an Azure upstream with a `deployment` map: the request path with
/// its deployment segment replaced (`/openai/deployments/{d}/…`), keyed by the request's
/// `model`, else by the deployment name it was sent with.
pub(super) fn rewritten_path(
    upstream: &Upstream,
    path_and_query: &str,
    model: Option<&str>,
) -> Option<String> {
    if upstream.kind != UpstreamKind::Azure || upstream.deployment.is_empty() {
        return None;
    }
    let rest = path_and_query.strip_prefix("/openai/deployments/")?;
    let (deployment, tail) = rest.split_once('/')?;
    let target = model
        .and_then(|m| upstream.deployment.get(m))
        .or_else(|| upstream.deployment.get(deployment))?;
    Some(format!("/openai/deployments/{target}/{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn azure(deployments: &str) -> Upstream {
        let text = format!(
            "[[upstream]]\nname=\"eu\"\nkind=\"azure\"\nbase_url=\"https://eu\"\n[upstream.deployment]\n{deployments}\n"
        );
        Config::from_toml(&text, &|_| None)
            .expect("valid")
            .upstreams
            .remove(0)
    }

    #[test]
    fn deployment_is_rewritten_by_model_then_by_name() {
        let up = azure("\"gpt-4o\" = \"gpt4o-eu\"\n\"us-mini\" = \"eu-mini\"");
        let path = "/openai/deployments/us-4o/chat/completions?api-version=2024-10-21";
        assert_eq!(
            rewritten_path(&up, path, Some("gpt-4o")).as_deref(),
            Some("/openai/deployments/gpt4o-eu/chat/completions?api-version=2024-10-21")
        );
        let path = "/openai/deployments/us-mini/embeddings";
        assert_eq!(
            rewritten_path(&up, path, None).as_deref(),
            Some("/openai/deployments/eu-mini/embeddings")
        );
        assert_eq!(
            rewritten_path(&up, "/v1/chat/completions", Some("gpt-4o")),
            None,
            "other shapes pass as they are"
        );
        assert_eq!(
            rewritten_path(&up, "/openai/deployments/unknown/x", Some("other")),
            None
        );
    }

    #[test]
    fn only_the_upstreams_own_failures_fall_back() {
        assert!(falls_back(
            Some(GiveUp::RetriesExhausted),
            Reason::Status503
        ));
        assert!(falls_back(Some(GiveUp::BudgetExhausted), Reason::Status503));
        assert!(falls_back(
            Some(GiveUp::ServerDelayTooLong),
            Reason::Status429
        ));
        assert!(falls_back(Some(GiveUp::NotRetryable), Reason::CircuitOpen));
        assert!(!falls_back(
            Some(GiveUp::NotRetryable),
            Reason::ContentFilter
        ));
        assert!(!falls_back(Some(GiveUp::DeadlineExceeded), Reason::Timeout));
        assert!(!falls_back(None, Reason::Success));
    }
}
