//! The shape of a request path, and the same request in another provider's shape:
//! OpenAI `/v1/X`, Azure's v1 API `/openai/v1/X` (model in the body, both), and Azure
//! deployments `/openai/deployments/{d}/X?api-version=…` (model in the path).

/// A request path (with its query) by shape. `rest` is what follows the shape's fixed
/// start: `chat/completions?…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape<'a> {
    OpenAi { rest: &'a str },
    AzureV1 { rest: &'a str },
    AzureDeployment { deployment: &'a str, rest: &'a str },
    Other,
}

impl<'a> Shape<'a> {
    pub fn of(path_and_query: &'a str) -> Shape<'a> {
        if let Some(rest) = path_and_query.strip_prefix("/v1/") {
            return Shape::OpenAi { rest };
        }
        if let Some(rest) = path_and_query.strip_prefix("/openai/v1/") {
            return Shape::AzureV1 { rest };
        }
        path_and_query
            .strip_prefix("/openai/deployments/")
            .and_then(|r| r.split_once('/'))
            .filter(|(d, _)| !d.is_empty())
            .map_or(Shape::Other, |(deployment, rest)| Shape::AzureDeployment {
                deployment,
                rest,
            })
    }
}

/// `/v1/X`, without the `api-version` parameter only Azure knows.
pub(super) fn openai_path(rest: &str) -> String {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("api-version"))
        .collect();
    if kept.is_empty() {
        format!("/v1/{path}")
    } else {
        format!("/v1/{path}?{}", kept.join("&"))
    }
}

/// `/openai/v1/X` (Azure's v1 API takes the model in the body, like OpenAI).
pub(super) fn azure_v1_path(rest: &str) -> String {
    format!("/openai/v1/{rest}")
}

/// `/openai/deployments/{deployment}/X`.
pub(super) fn deployment_path(deployment: &str, rest: &str) -> String {
    format!("/openai/deployments/{deployment}/{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_told_apart_by_shape() {
        assert_eq!(
            Shape::of("/v1/chat/completions"),
            Shape::OpenAi {
                rest: "chat/completions"
            }
        );
        assert_eq!(
            Shape::of("/openai/v1/embeddings?x=1"),
            Shape::AzureV1 {
                rest: "embeddings?x=1"
            }
        );
        assert_eq!(
            Shape::of("/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"),
            Shape::AzureDeployment {
                deployment: "gpt4o",
                rest: "chat/completions?api-version=2024-10-21"
            }
        );
        assert_eq!(Shape::of("/openai/deployments//x"), Shape::Other);
        assert_eq!(Shape::of("/healthz"), Shape::Other);
    }

    #[test]
    fn openai_paths_drop_only_the_api_version() {
        assert_eq!(
            openai_path("chat/completions?api-version=2024-10-21"),
            "/v1/chat/completions"
        );
        assert_eq!(
            openai_path("files?purpose=batch&api-version=1&limit=2"),
            "/v1/files?purpose=batch&limit=2"
        );
        assert_eq!(openai_path("models"), "/v1/models");
        assert_eq!(
            azure_v1_path("chat/completions"),
            "/openai/v1/chat/completions"
        );
    }
}
