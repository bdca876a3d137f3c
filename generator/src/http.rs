//! A client of OpenAI-compatible chat servers (`POST {base}/chat/completions`).
//!
//! vLLM, llama.cpp's server, Ollama, OpenAI and `ibex serve` all speak this format. The client
//! streams (server-sent events) so text reaches the caller as it is generated, retries with
//! exponential backoff when the server is overloaded (429), failing (5xx) or refusing connections,
//! and turns every other surprise into an error that says what the server did.
//!
//! The client is ureq's blocking one: it needs no async runtime, so the library (and the Python
//! package) carries none; `tests/generation.rs` drives it against a misbehaving server (retries,
//! malformed answers, a cut stream, a timeout, a refused connection).

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{GeneratorError, Result};
use crate::{Completion, FinishReason, GenerationRequest, Generator, Likelihood};

/// Connection settings of an [`HttpGenerator`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Base URL including the API version, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The model name the server expects.
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set.
    pub api_key: Option<String>,
    /// Limit on one request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// Retries after a 429, a 5xx or a refused connection (0 = try once).
    pub max_retries: u32,
    /// The first backoff; each retry doubles it (a server's `Retry-After` wins, up to 30 s).
    pub initial_backoff: Duration,
    /// Whether to ask for a streamed answer.
    pub stream: bool,
}

impl HttpOptions {
    /// Defaults for a server at `base_url` serving `model`: 120 s timeout, 3 retries from 0.5 s,
    /// streaming.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        HttpOptions {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(120),
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            stream: true,
        }
    }
}

/// A [`Generator`] backed by an OpenAI-compatible HTTP server.
pub struct HttpGenerator {
    options: HttpOptions,
    url: String,
    /// `{base}/completions`, where likelihoods are asked (OpenAI's legacy text endpoint).
    completions_url: String,
    agent: ureq::Agent,
}

impl HttpGenerator {
    /// A client for the server `options` describe. Its calls block, so servers call it from a
    /// blocking task, never on an async runtime's own threads.
    pub fn new(options: HttpOptions) -> Result<Self> {
        let base = options.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(GeneratorError::Config(format!(
                "the LLM URL `{}` must start with http:// or https:// (for example http://127.0.0.1:8080/v1)",
                options.base_url
            )));
        }
        if options.model.trim().is_empty() {
            return Err(GeneratorError::Config(
                "no model name for the LLM server: set IBEX_LLM_MODEL".into(),
            ));
        }
        let base = base.strip_suffix("/chat/completions").unwrap_or(base);
        let url = format!("{base}/chat/completions");
        let completions_url = format!("{base}/completions");
        // `timeout` bounds the whole exchange, reading a streamed body included, as a deadline.
        let agent = ureq::AgentBuilder::new()
            .timeout(options.timeout)
            .timeout_connect(options.timeout.min(Duration::from_secs(10)))
            .build();
        Ok(HttpGenerator {
            options,
            url,
            completions_url,
            agent,
        })
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn body(&self, request: &GenerationRequest) -> Value {
        let mut body = json!({
            "model": self.options.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
            "stream": self.options.stream,
        });
        if self.options.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    /// Sends the chat request, retrying what is worth retrying; returns a successful response.
    fn send(&self, body: &Value) -> Result<ureq::Response> {
        self.send_to(&self.url, body)
    }

    /// Sends `body` to `url`, retrying what is worth retrying; returns a successful response.
    fn send_to(&self, url: &str, body: &Value) -> Result<ureq::Response> {
        let payload = body.to_string();
        let mut backoff = self.options.initial_backoff;
        let mut attempt = 0;
        loop {
            let mut request = self.agent.post(url).set("Content-Type", "application/json");
            if let Some(key) = &self.options.api_key {
                request = request.set("Authorization", &format!("Bearer {key}"));
            }
            let retry_after = match request.send_string(&payload) {
                Ok(response) => return Ok(response),
                Err(ureq::Error::Status(status, response)) => {
                    let retryable = status == 429 || (500..600).contains(&status);
                    let retry_after = response
                        .header("Retry-After")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    if !retryable || attempt >= self.options.max_retries {
                        let text = response.into_string().unwrap_or_default();
                        return Err(GeneratorError::Status {
                            url: url.to_string(),
                            status,
                            body: excerpt(&text),
                        });
                    }
                    retry_after
                }
                Err(ureq::Error::Transport(transport)) if is_timeout(&transport) => {
                    return Err(self.timeout_error())
                }
                Err(ureq::Error::Transport(transport)) => {
                    if attempt >= self.options.max_retries {
                        return Err(GeneratorError::Unreachable {
                            url: url.to_string(),
                            reason: transport.to_string(),
                        });
                    }
                    None
                }
            };
            std::thread::sleep(retry_after.unwrap_or(backoff));
            backoff *= 2;
            attempt += 1;
        }
    }

    fn timeout_error(&self) -> GeneratorError {
        GeneratorError::Timeout {
            url: self.url.clone(),
            seconds: self.options.timeout.as_secs(),
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> GeneratorError {
        GeneratorError::Malformed {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    fn read_whole(&self, response: ureq::Response) -> Result<Completion> {
        let text = response.into_string().map_err(|e| self.read_error(e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| self.malformed(format!("not JSON ({e}): {}", excerpt(&text))))?;
        let choice = value
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| self.malformed(format!("no choices[0]: {}", excerpt(&text))))?;
        let content = choice
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.malformed(format!(
                    "choices[0].message.content is not a string: {}",
                    excerpt(&text)
                ))
            })?;
        let usage = |key: &str| {
            value
                .get("usage")
                .and_then(|u| u.get(key))
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize
        };
        Ok(Completion {
            text: content.to_string(),
            finish_reason: finish_reason(choice.get("finish_reason")),
            prompt_tokens: usage("prompt_tokens"),
            completion_tokens: usage("completion_tokens"),
            constrained: false,
        })
    }

    fn read_stream(
        &self,
        response: ureq::Response,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion> {
        let mut text = String::new();
        let mut finish = None;
        let (mut prompt_tokens, mut completion_tokens) = (0, 0);
        let mut done = false;
        for line in BufReader::new(response.into_reader()).lines() {
            let line = line.map_err(|e| {
                if is_timeout_kind(e.kind()) {
                    self.timeout_error()
                } else {
                    self.malformed(format!("the stream broke: {e}"))
                }
            })?;
            let Some(data) = line.strip_prefix("data:") else {
                continue; // comments, event names, blank separators
            };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                break;
            }
            let event: Value = serde_json::from_str(data).map_err(|e| {
                self.malformed(format!("an event is not JSON ({e}): {}", excerpt(data)))
            })?;
            if let Some(error) = event.get("error") {
                return Err(
                    self.malformed(format!("the server reported an error mid-stream: {error}"))
                );
            }
            if let Some(usage) = event.get("usage").filter(|u| u.is_object()) {
                let get = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
                prompt_tokens = get("prompt_tokens");
                completion_tokens = get("completion_tokens");
            }
            let Some(choice) = event.get("choices").and_then(|c| c.get(0)) else {
                continue; // the usage-only event
            };
            if let Some(delta) = choice
                .get("delta")
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
            {
                on_text(delta);
                text.push_str(delta);
            }
            if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
                finish = Some(finish_reason(choice.get("finish_reason")));
            }
        }
        if !done && finish.is_none() {
            return Err(self.malformed("the event stream ended before the answer did"));
        }
        Ok(Completion {
            text,
            finish_reason: finish.unwrap_or(FinishReason::Stop),
            prompt_tokens,
            completion_tokens,
            constrained: false,
        })
    }

    fn read_error(&self, e: std::io::Error) -> GeneratorError {
        if is_timeout_kind(e.kind()) {
            self.timeout_error()
        } else {
            self.malformed(format!("cannot read the answer: {}", error_chain(&e)))
        }
    }
}

/// What a server lacks when it returns no prompt log-probabilities, and which servers have them.
const PROMPT_LOGPROBS: &str = "prompt log-probabilities: they need OpenAI's text endpoint \
(/v1/completions) with `echo` and `logprobs`, which vLLM serves; llama.cpp's server and Ollama do \
not echo them (use vLLM, or the embedded model)";

impl HttpGenerator {
    /// [`Generator::likelihood`] through `POST {base}/completions` with the prompt and
    /// continuation as one text, `echo` and `logprobs`: the server scores the whole text, and
    /// the tokens that start at or after the prompt's end are the continuation's (a token that
    /// straddles the join counts as the prompt's).
    fn score(&self, prompt: &str, continuation: &str) -> Result<Likelihood> {
        if prompt.is_empty() {
            return Err(GeneratorError::InvalidRequest(
                "a likelihood needs a prompt of at least one token".into(),
            ));
        }
        let text = format!("{prompt}{continuation}");
        let body = json!({
            "model": self.options.model,
            "prompt": text,
            "max_tokens": 1,
            "temperature": 0,
            "echo": true,
            "logprobs": 0,
        });
        let unsupported = || GeneratorError::Unsupported {
            backend: self.completions_url.clone(),
            capability: PROMPT_LOGPROBS.into(),
        };
        let response = match self.send_to(&self.completions_url, &body) {
            Err(GeneratorError::Status {
                status: 404 | 405 | 501,
                ..
            }) => return Err(unsupported()),
            other => other?,
        };
        let answer = response.into_string().map_err(|e| self.read_error(e))?;
        let value: Value = serde_json::from_str(&answer)
            .map_err(|e| self.malformed(format!("not JSON ({e}): {}", excerpt(&answer))))?;
        let logprobs = value
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("logprobs"))
            .filter(|l| l.is_object())
            .ok_or_else(unsupported)?;
        let (Some(offsets), Some(values)) = (
            logprobs.get("text_offset").and_then(Value::as_array),
            logprobs.get("token_logprobs").and_then(Value::as_array),
        ) else {
            return Err(unsupported());
        };
        if offsets.len() != values.len() {
            return Err(self.malformed(format!(
                "logprobs has {} text offsets for {} token log-probabilities",
                offsets.len(),
                values.len()
            )));
        }
        // Offsets count characters of the echoed text; the generated token comes after `end`.
        let (start, end) = (prompt.chars().count(), text.chars().count());
        let mut token_logprobs = Vec::new();
        let mut echoed = false;
        for (offset, logprob) in offsets.iter().zip(values) {
            let offset = offset
                .as_u64()
                .ok_or_else(|| self.malformed(format!("a text offset is {offset}")))?
                as usize;
            echoed |= offset < end;
            if offset < start || offset >= end {
                continue;
            }
            let logprob = logprob.as_f64().ok_or_else(|| {
                self.malformed(format!(
                    "the log-probability at offset {offset} is {logprob}"
                ))
            })?;
            token_logprobs.push(logprob as f32);
        }
        if !echoed {
            // Log-probabilities of the generated token only: the text was not echoed.
            return Err(unsupported());
        }
        if !continuation.is_empty() && token_logprobs.is_empty() {
            return Err(GeneratorError::InvalidRequest(
                "the server's tokenizer merged the whole continuation into the prompt's last \
                 token (end the prompt with a space or a newline)"
                    .into(),
            ));
        }
        Ok(Likelihood { token_logprobs })
    }
}

impl Generator for HttpGenerator {
    fn likelihood(&self, prompt: &str, continuation: &str) -> Result<Likelihood> {
        self.score(prompt, continuation)
    }

    fn model(&self) -> &str {
        &self.options.model
    }

    fn generate(
        &self,
        request: &GenerationRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion> {
        request.validate()?;
        let response = self.send(&self.body(request))?;
        let is_event_stream = response
            .header("Content-Type")
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if is_event_stream {
            self.read_stream(response, on_text)
        } else {
            // A server may ignore `stream`; then the whole answer arrives at once.
            let completion = self.read_whole(response)?;
            on_text(&completion.text);
            Ok(completion)
        }
    }
}

fn finish_reason(value: Option<&Value>) -> FinishReason {
    match value.and_then(Value::as_str) {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// The first 300 characters of a server's answer, for error messages.
fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(300).collect();
    if out.len() < text.len() {
        out.push_str("...");
    }
    out
}

/// A deadline passed while connecting, sending or reading (socket timeouts surface as
/// `TimedOut` or, on some platforms, `WouldBlock`).
fn is_timeout_kind(kind: std::io::ErrorKind) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// Whether a transport error comes from a passed deadline rather than a refused or broken
/// connection.
fn is_timeout(transport: &ureq::Transport) -> bool {
    let mut source = std::error::Error::source(transport);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if is_timeout_kind(io.kind()) {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
