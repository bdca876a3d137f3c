//! A client of OpenAI-compatible chat servers (`POST {base}/chat/completions`).
//!
//! vLLM, llama.cpp's server, Ollama, OpenAI and `ibex serve` all speak this format. The client
//! streams (server-sent events) so text reaches the caller as it is generated, retries with
//! exponential backoff when the server is overloaded (429), failing (5xx) or refusing connections,
//! and turns every other surprise into an error that says what the server did.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{GeneratorError, Result};
use crate::{Completion, FinishReason, GenerationRequest, Generator};

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
    client: reqwest::blocking::Client,
}

impl HttpGenerator {
    /// A client for the server `options` describe. Must not be called on an async runtime's
    /// thread (the blocking client runs its own); servers call it from a blocking task.
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
        let url = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| GeneratorError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(HttpGenerator {
            options,
            url,
            client,
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

    /// Sends the request, retrying what is worth retrying; returns a successful response.
    fn send(&self, body: &Value) -> Result<reqwest::blocking::Response> {
        let mut backoff = self.options.initial_backoff;
        let mut attempt = 0;
        loop {
            let mut builder = self.client.post(&self.url).json(body);
            if let Some(key) = &self.options.api_key {
                builder = builder.bearer_auth(key);
            }
            let retry_after = match builder.send() {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retryable = status.as_u16() == 429 || status.is_server_error();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    if !retryable || attempt >= self.options.max_retries {
                        let text = response.text().unwrap_or_default();
                        return Err(GeneratorError::Status {
                            url: self.url.clone(),
                            status: status.as_u16(),
                            body: excerpt(&text),
                        });
                    }
                    retry_after
                }
                Err(e) if e.is_timeout() => {
                    return Err(GeneratorError::Timeout {
                        url: self.url.clone(),
                        seconds: self.options.timeout.as_secs(),
                    })
                }
                Err(e) => {
                    if attempt >= self.options.max_retries {
                        return Err(GeneratorError::Unreachable {
                            url: self.url.clone(),
                            reason: error_chain(&e),
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

    fn malformed(&self, reason: impl Into<String>) -> GeneratorError {
        GeneratorError::Malformed {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    fn read_whole(&self, response: reqwest::blocking::Response) -> Result<Completion> {
        let text = response.text().map_err(|e| self.read_error(e))?;
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
        response: reqwest::blocking::Response,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion> {
        let mut text = String::new();
        let mut finish = None;
        let (mut prompt_tokens, mut completion_tokens) = (0, 0);
        let mut done = false;
        for line in BufReader::new(response).lines() {
            let line = line.map_err(|e| {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    GeneratorError::Timeout {
                        url: self.url.clone(),
                        seconds: self.options.timeout.as_secs(),
                    }
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

    fn read_error(&self, e: reqwest::Error) -> GeneratorError {
        if e.is_timeout() {
            GeneratorError::Timeout {
                url: self.url.clone(),
                seconds: self.options.timeout.as_secs(),
            }
        } else {
            self.malformed(format!("cannot read the answer: {}", error_chain(&e)))
        }
    }
}

impl Generator for HttpGenerator {
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
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
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
