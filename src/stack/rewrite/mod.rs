//! Per hop: the request as that upstream takes it (SPEC §7). Its `[upstream.models]`
//! map renames the model — in the JSON body's `model` field (OpenAI shapes, Azure
//! `/openai/v1/`) or in the deployment segment (`/openai/deployments/{d}/`) — and a
//! fallback of the other provider gets the request in its own shape. Each hop injects
//! its own key (`proxy::headers`), so nothing here touches credentials.
//!
//! Free when unused: an upstream without a model map, as a request's primary, sends
//! the client's path and body as they are, and the body is never parsed.

mod model_field;
mod shape;

use bytes::Bytes;
use http::HeaderValue;

use super::call::{Call, client_path};
use crate::config::{Upstream, UpstreamKind};
use model_field::ModelField;
use shape::Shape;

/// What one hop sends, where it differs from what the client sent.
pub(super) struct HopRequest {
    /// The path and query in this hop's shape; `None`: the client's.
    pub path_and_query: Option<String>,
    /// The body with its model rewritten; `None`: the client's body.
    pub body: Option<Bytes>,
    /// The model that replaced the client's, for `x-backstop-model`.
    pub model: Option<HeaderValue>,
}

impl HopRequest {
    /// The request for `upstream`; `fallback` when it is not the request's primary (only
    /// a fallback changes the request's shape).
    pub fn plan(upstream: &Upstream, call: &Call, fallback: bool) -> HopRequest {
        let mut request = HopRequest {
            path_and_query: None,
            body: None,
            model: None,
        };
        if upstream.models.is_empty() && !fallback {
            return request;
        }
        let shape = Shape::of(client_path(&call.parts.uri));
        match (shape, upstream.kind) {
            (Shape::AzureDeployment { deployment, rest }, UpstreamKind::Azure) => {
                request.deployment(upstream, call, deployment, rest);
            }
            (Shape::AzureDeployment { deployment, rest }, UpstreamKind::OpenAi) if fallback => {
                request.path_and_query = Some(shape::openai_path(rest));
                request.body_model(upstream, call, Some(deployment));
            }
            (Shape::AzureV1 { rest }, UpstreamKind::OpenAi) if fallback => {
                request.path_and_query = Some(shape::openai_path(rest));
                request.body_model(upstream, call, None);
            }
            (Shape::OpenAi { rest }, UpstreamKind::Azure) if fallback => {
                request.path_and_query = Some(shape::azure_v1_path(rest));
                request.body_model(upstream, call, None);
            }
            _ => request.body_model(upstream, call, None),
        }
        request
    }

    /// The deployment segment, mapped by the body's model, else by its own name.
    fn deployment(&mut self, upstream: &Upstream, call: &Call, deployment: &str, rest: &str) {
        let target = call
            .meta
            .model()
            .and_then(|m| upstream.models.get(m))
            .or_else(|| upstream.models.get(deployment));
        if let Some(target) = target.filter(|t| *t != deployment) {
            self.path_and_query = Some(shape::deployment_path(target, rest));
            self.model = HeaderValue::from_str(target).ok();
        }
    }

    /// The body's `model`, mapped. `deployment` (a request from an Azure deployment path)
    /// is also a key to map by, and the model to set when the body has none.
    fn body_model(&mut self, upstream: &Upstream, call: &Call, deployment: Option<&str>) {
        let Some(body) = call.body.buffered() else {
            tracing::debug!("body streamed (not kept for retries): model not rewritten");
            return;
        };
        let by_deployment = || deployment.and_then(|d| upstream.models.get(d));
        let (rewritten, target) = match model_field::find(body) {
            Ok(ModelField::At { span, value }) => {
                let Some(target) = upstream.models.get(&*value).or_else(by_deployment) else {
                    return;
                };
                if *target == value {
                    return;
                }
                (model_field::replaced(body, span, target), target.as_str())
            }
            Ok(ModelField::Absent { open, empty }) => {
                let Some(target) = by_deployment().map(String::as_str).or(deployment) else {
                    tracing::debug!("request body has no model: sent as it is");
                    return;
                };
                (model_field::inserted(body, open, empty, target), target)
            }
            Err(why) => {
                tracing::debug!(
                    ?why,
                    "request body's model cannot be rewritten: sent as it is"
                );
                return;
            }
        };
        self.model = HeaderValue::from_str(target).ok();
        self.body = Some(rewritten);
    }
}
