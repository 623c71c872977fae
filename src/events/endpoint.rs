//! The request's endpoint as events hold it: its path (shared for OpenAI's own paths)
//! and its bounded `endpoint` label (SPEC §4).

use std::sync::Arc;

/// The bounded `endpoint` label of SPEC §4, from a request path.
pub fn endpoint_kind(path: &str) -> &'static str {
    // A `static`, iterated by reference: a `const` array is copied onto the stack.
    static KINDS: [(&str, &str); 8] = [
        ("/chat/completions", "chat_completions"),
        ("/completions", "completions"),
        ("/embeddings", "embeddings"),
        ("/responses", "responses"),
        ("/moderations", "moderations"),
        ("/models", "models"),
        ("/images/", "images"),
        ("/audio/", "audio"),
    ];
    let path = path.trim_end_matches('/');
    for &(needle, kind) in &KINDS {
        let hit = if needle.ends_with('/') {
            path.contains(needle)
        } else {
            path.ends_with(needle)
                || path
                    .match_indices(needle)
                    .any(|(at, _)| path[at + needle.len()..].starts_with('/'))
        };
        if hit {
            return kind;
        }
    }
    "other"
}

/// The request's path as the events hold it, and its `endpoint` label. The paths of
/// OpenAI's own API are shared copies made once, with their labels (a request to one of
/// them allocates nothing for its path and scans nothing for its label); any other
/// path is copied and its label found by `endpoint_kind`.
pub fn endpoint(path: &str) -> (Arc<str>, &'static str) {
    static KNOWN: std::sync::LazyLock<[(Arc<str>, &'static str); 6]> =
        std::sync::LazyLock::new(|| {
            [
                ("/v1/chat/completions", "chat_completions"),
                ("/v1/completions", "completions"),
                ("/v1/embeddings", "embeddings"),
                ("/v1/responses", "responses"),
                ("/v1/moderations", "moderations"),
                ("/v1/models", "models"),
            ]
            .map(|(path, kind)| (Arc::from(path), kind))
        });
    match KNOWN.iter().find(|(known, _)| **known == *path) {
        Some((known, kind)) => (known.clone(), kind),
        None => (path.into(), endpoint_kind(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::{endpoint, endpoint_kind};
    use std::sync::Arc;

    #[test]
    fn endpoint_labels_are_a_fixed_set() {
        let cases = [
            ("/v1/chat/completions", "chat_completions"),
            (
                "/openai/deployments/gpt/chat/completions",
                "chat_completions",
            ),
            ("/v1/completions", "completions"),
            ("/openai/deployments/e/embeddings", "embeddings"),
            ("/v1/responses", "responses"),
            ("/v1/responses/resp_1/cancel", "responses"),
            ("/v1/images/generations", "images"),
            ("/v1/audio/transcriptions", "audio"),
            ("/v1/moderations", "moderations"),
            ("/v1/models", "models"),
            ("/v1/models/gpt-4o", "models"),
            ("/v1/files", "other"),
            ("/", "other"),
            ("/v1/chat/completions/", "chat_completions"),
            (
                "/v1/chat/completions/chatcmpl-1/messages",
                "chat_completions",
            ),
            ("/v1/modelsx/completions", "completions"),
            ("/v1/modelsx", "other"),
            ("/v1/responsesx/a/responses/b", "responses"),
        ];
        for (path, kind) in cases {
            assert_eq!(endpoint_kind(path), kind, "{path}");
        }
    }

    #[test]
    fn a_shared_path_comes_with_the_label_its_scan_would_give() {
        for path in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/responses",
            "/v1/moderations",
            "/v1/models",
        ] {
            assert_eq!(endpoint(path).1, endpoint_kind(path), "{path}");
        }
    }

    #[test]
    fn openai_paths_are_shared_and_any_other_path_is_kept_as_it_is() {
        let (chat, kind) = endpoint("/v1/chat/completions");
        assert!(Arc::ptr_eq(&chat, &endpoint("/v1/chat/completions").0));
        assert_eq!(&*chat, "/v1/chat/completions");
        assert_eq!(kind, "chat_completions");
        for path in [
            "/v1/chat/completions/",
            "/openai/deployments/d/chat/completions",
            "/v1/modelsx",
            "",
        ] {
            let (kept, kind) = endpoint(path);
            assert_eq!(&*kept, path);
            assert_eq!(kind, endpoint_kind(path), "{path}");
            assert!(!Arc::ptr_eq(&kept, &endpoint(path).0), "{path} is copied");
        }
    }
}
