//! Canned OpenAI-shaped bodies: what a real upstream answers, field for field, with
//! small made-up content.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Received;

/// The model named when the request names none (and is not an Azure deployment path).
const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// The words the mock "generates", one per content chunk.
const WORDS: [&str; 8] = [
    "Hello",
    " from",
    " the",
    " backstop",
    " mock",
    " upstream",
    ",",
    " again",
];
/// Length of each mock embedding vector.
const EMBEDDING_DIMS: usize = 8;

/// The normal answer for a request.
pub(super) enum Answer {
    /// A JSON body with this status.
    Json(u16, Value),
    /// An SSE stream of chat completion chunks.
    Stream,
}

/// Routes by the end of the path, so OpenAI (`/v1/...`) and both Azure shapes
/// (`/openai/deployments/{d}/...`, `/openai/v1/...`) are served alike.
pub(super) fn answer(req: &Received, n: usize) -> Answer {
    let streaming = req
        .json()
        .is_some_and(|body| body["stream"] == Value::Bool(true));
    if streaming && is_chat(req) {
        return Answer::Stream;
    }
    let (status, body) = json_answer(req, n);
    Answer::Json(status, body)
}

fn is_chat(req: &Received) -> bool {
    req.method.eq_ignore_ascii_case("POST") && req.path.ends_with("/chat/completions")
}

/// The normal JSON answer, `"stream": true` ignored.
pub(super) fn json_answer(req: &Received, n: usize) -> (u16, Value) {
    let post = req.method.eq_ignore_ascii_case("POST");
    let get = req.method.eq_ignore_ascii_case("GET");
    if is_chat(req) {
        return match req.json() {
            Some(_) => (200, chat_completion(req, n)),
            None => (400, invalid_json()),
        };
    }
    if post && req.path.ends_with("/embeddings") {
        return match req.json() {
            Some(body) => (200, embeddings(req, &body)),
            None => (400, invalid_json()),
        };
    }
    if get && req.path.ends_with("/models") {
        return (200, models());
    }
    (404, not_found(req))
}

/// The OpenAI error shape.
pub(super) fn error(message: &str, kind: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn invalid_json() -> Value {
    let message = "We could not parse the JSON body of your request. (HINT: This likely means you \
                   aren't using your HTTP library correctly.)";
    error(message, Some("invalid_request_error"), None)
}

fn not_found(req: &Received) -> Value {
    let message = format!("Invalid URL ({} {})", req.method, req.path);
    error(&message, Some("invalid_request_error"), Some("unknown_url"))
}

/// The model to echo: the request's `model`, else the Azure deployment, else a default.
pub(super) fn model(req: &Received) -> String {
    if let Some(model) = req
        .json()
        .as_ref()
        .and_then(|b| b["model"].as_str().map(str::to_string))
    {
        return model;
    }
    req.path
        .split_once("/openai/deployments/")
        .and_then(|(_, rest)| rest.split('/').next())
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_MODEL)
        .to_string()
}

/// Whether the request asked for a final usage chunk.
pub(super) fn include_usage(req: &Received) -> bool {
    req.json()
        .is_some_and(|b| b["stream_options"]["include_usage"] == Value::Bool(true))
}

/// A rough prompt token count: a token per four bytes of message content, at least 1.
fn prompt_tokens(body: &Value) -> u64 {
    let text_len: usize = match &body["messages"] {
        Value::Array(messages) => messages
            .iter()
            .map(|m| match &m["content"] {
                Value::String(s) => s.len() + 2,
                other => other.to_string().len(),
            })
            .sum(),
        _ => match &body["input"] {
            Value::String(s) => s.len(),
            other => other.to_string().len(),
        },
    };
    (text_len as u64).div_ceil(4).max(1)
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The text of content chunk `i`.
fn word(i: usize) -> &'static str {
    WORDS[i % WORDS.len()]
}

fn chat_completion(req: &Received, n: usize) -> Value {
    let body = req.json().unwrap_or(Value::Null);
    let completion_tokens = WORDS.len() as u64;
    json!({
        "id": format!("chatcmpl-mock-{n}"),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model(req),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": WORDS.concat(), "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage(prompt_tokens(&body), completion_tokens),
        "system_fingerprint": "fp_mock",
    })
}

fn embeddings(req: &Received, body: &Value) -> Value {
    let inputs = match &body["input"] {
        Value::Array(items) => items.len().max(1),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|index| {
            let vector: Vec<f64> = (0..EMBEDDING_DIMS)
                .map(|d| ((index * EMBEDDING_DIMS + d) as f64 * 0.37).sin() / 4.0)
                .collect();
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    let prompt = prompt_tokens(body);
    json!({
        "object": "list",
        "data": data,
        "model": model(req),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    })
}

fn models() -> Value {
    let created = 1_700_000_000u64;
    let data: Vec<Value> = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "system"}))
        .collect();
    json!({"object": "list", "data": data})
}

/// The parts every chunk of one stream shares.
pub(super) struct ChunkStream {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    prompt_tokens: u64,
}

impl ChunkStream {
    pub(super) fn new(req: &Received, n: usize) -> ChunkStream {
        ChunkStream {
            id: format!("chatcmpl-mock-{n}"),
            created: now_secs(),
            model: model(req),
            include_usage: include_usage(req),
            prompt_tokens: prompt_tokens(&req.json().unwrap_or(Value::Null)),
        }
    }

    pub(super) fn include_usage(&self) -> bool {
        self.include_usage
    }

    fn chunk(&self, choices: Value, usage: Value) -> String {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_mock",
            "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = usage;
        }
        format!("data: {chunk}\n\n")
    }

    /// Content event `i` of `total`: the first carries the role, the last the
    /// `finish_reason`.
    pub(super) fn content_event(&self, i: usize, total: usize) -> String {
        let mut delta = json!({"content": word(i)});
        if i == 0 {
            delta["role"] = json!("assistant");
        }
        let finish = if i + 1 == total {
            json!("stop")
        } else {
            Value::Null
        };
        let choices =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        self.chunk(choices, Value::Null)
    }

    /// The final usage event (empty `choices`), for `stream_options.include_usage`.
    pub(super) fn usage_event(&self, completion_tokens: usize) -> String {
        self.chunk(
            json!([]),
            usage(self.prompt_tokens, completion_tokens as u64),
        )
    }
}

/// The event that ends a stream with an error, as OpenAI sends mid-stream.
pub(super) fn error_event() -> String {
    let body = error(
        "The server had an error while processing your request. Sorry about that!",
        Some("server_error"),
        Some("server_error"),
    );
    format!("data: {body}\n\n")
}

/// The `[DONE]` sentinel.
pub(super) const DONE_EVENT: &str = "data: [DONE]\n\n";
