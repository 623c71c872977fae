//! Whose response a request may be given (SPEC §6): a replay is scoped by the client's
//! credential, the method, the path and either its `Idempotency-Key` or (an SDK retry)
//! the SHA-256 of its body. Only hashes leave this file: the credential is hashed at
//! once, and the scope is a hash of the hash, so neither a key nor a prompt is ever
//! kept, written or logged.

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

use crate::proxy::headers::API_KEY;
use crate::request_fingerprint::Sha256Hex;

/// Why a request may be answered from an earlier one (`backstop_replays_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayReason {
    /// The client sent an `Idempotency-Key`.
    IdempotencyKey,
    /// The OpenAI SDK retried (`x-stainless-retry-count` ≥ 1) a call it gave up on.
    SdkRetry,
}

impl ReplayReason {
    pub const ALL: [ReplayReason; 2] = [ReplayReason::IdempotencyKey, ReplayReason::SdkRetry];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplayReason::IdempotencyKey => "idempotency_key",
            ReplayReason::SdkRetry => "sdk_retry",
        }
    }
}

/// A hash of the client's credential (`Authorization`, else `api-key`; none is a
/// credential of its own). Two clients with different keys never share a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential([u8; 32]);

impl Credential {
    pub fn of(headers: &HeaderMap) -> Credential {
        let value = headers
            .get(AUTHORIZATION)
            .map(|v| (b'a', v))
            .or_else(|| headers.get(API_KEY).map(|v| (b'k', v)));
        let mut hash = Sha256::new();
        hash.update(b"backstop credential\0");
        match value {
            Some((which, v)) => {
                hash.update([which]);
                hash.update(v.as_bytes());
            }
            None => hash.update(b"-"),
        }
        Credential(hash.finalize().into())
    }
}

/// Where a replay entry and its in-flight marker live: a hash over everything that
/// scopes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeKey(pub [u8; 32]);

impl ScopeKey {
    /// The scope of a request with `Idempotency-Key: key`.
    pub fn idempotency(credential: Credential, method: &Method, path: &str, key: &str) -> ScopeKey {
        ScopeKey::hash(
            ReplayReason::IdempotencyKey,
            credential,
            method,
            path,
            key.as_bytes(),
        )
    }

    /// The scope of an SDK retry of a request whose body hash is `body`.
    pub fn sdk_retry(
        credential: Credential,
        method: &Method,
        path: &str,
        body: Sha256Hex,
    ) -> ScopeKey {
        ScopeKey::hash(ReplayReason::SdkRetry, credential, method, path, &body.0)
    }

    fn hash(
        reason: ReplayReason,
        credential: Credential,
        method: &Method,
        path: &str,
        last: &[u8],
    ) -> ScopeKey {
        let mut hash = Sha256::new();
        // Each part length-prefixed, so no two different scopes write the same bytes.
        for part in [
            reason.as_str().as_bytes(),
            &credential.0,
            method.as_str().as_bytes(),
            path.as_bytes(),
            last,
        ] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        ScopeKey(hash.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_fingerprint::request_sha256;
    use http::HeaderValue;

    fn credential(name: &'static str, value: &'static str) -> Credential {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        Credential::of(&h)
    }

    #[test]
    fn scopes_differ_by_credential_method_path_and_key() {
        let alice = credential("authorization", "Bearer sk-alice");
        let bob = credential("authorization", "Bearer sk-bob");
        let post = Method::POST;
        let base = ScopeKey::idempotency(alice, &post, "/v1/chat/completions", "k1");
        assert_eq!(
            base,
            ScopeKey::idempotency(alice, &post, "/v1/chat/completions", "k1")
        );
        for other in [
            ScopeKey::idempotency(bob, &post, "/v1/chat/completions", "k1"),
            ScopeKey::idempotency(alice, &Method::PUT, "/v1/chat/completions", "k1"),
            ScopeKey::idempotency(alice, &post, "/v1/completions", "k1"),
            ScopeKey::idempotency(alice, &post, "/v1/chat/completions", "k2"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn an_sdk_retry_never_shares_a_scope_with_a_key() {
        let alice = credential("authorization", "Bearer sk-alice");
        let body = request_sha256(&Method::POST, "/v1/x", b"{}");
        let sdk = ScopeKey::sdk_retry(alice, &Method::POST, "/v1/x", body);
        let text = body.to_string();
        assert_ne!(
            sdk,
            ScopeKey::idempotency(alice, &Method::POST, "/v1/x", &text)
        );
        let other = request_sha256(&Method::POST, "/v1/x", b"{ }");
        assert_ne!(
            sdk,
            ScopeKey::sdk_retry(alice, &Method::POST, "/v1/x", other)
        );
    }

    #[test]
    fn an_api_key_header_is_a_credential_and_none_is_one_too() {
        let azure = credential("api-key", "azure-secret");
        let bearer = credential("authorization", "azure-secret");
        let none = Credential::of(&HeaderMap::new());
        assert_ne!(azure, bearer, "the header's name counts too");
        assert_ne!(azure, none);
        assert_eq!(none, Credential::of(&HeaderMap::new()));
        let text = format!("{:?}", credential("authorization", "Bearer sk-secret"));
        assert!(!text.contains("secret"), "only the hash shows: {text}");
    }
}
