//! The LLM end of ibex's pipeline.
//!
//! A [`Generator`] turns a chat (system and user messages) into text. Two backends implement it:
//! - [`HttpGenerator`]: any server speaking OpenAI's `/v1/chat/completions` (vLLM, llama.cpp's
//!   server, Ollama, OpenAI, and ibex's own `ibex serve`). This is where answer quality comes from.
//! - [`EmbeddedGenerator`]: SmolLM2-135M-Instruct run in-process by candle from a quantized GGUF
//!   fetched through PyPI. It is small; it exists so that every generation feature works offline,
//!   and because running the model ourselves allows [constrained decoding](ItemListGrammar).
//!
//! Around them: [`prompt`] builds RAG prompts with numbered passages and checks the citations an
//! answer makes; [`grammar`] describes the item lists a recommender may emit, both to constrain
//! the embedded model token by token and to validate what an HTTP model wrote.

mod config;
mod embedded;
mod error;
pub mod fetch;
pub mod grammar;
mod http;
mod llama;
pub mod prompt;
mod q8_matmul;
mod tokenizer;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use config::{GeneratorConfig, LLM_CONFIG_ENV};
pub use embedded::{EmbeddedGenerator, EmbeddedOptions, MAX_CONTEXT_TOKENS};
pub use error::{GeneratorError, Result};
pub use grammar::{ItemListGrammar, OutputGrammar};
pub use http::{HttpGenerator, HttpOptions};
pub use tokenizer::SmolTokenizer;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// What the user says.
    User,
    /// What the model said before (few-shot examples, earlier turns).
    Assistant,
}

impl Role {
    /// The role's name in chat templates and the OpenAI format.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// 0 decodes greedily (reproducible); above 0 samples with this temperature.
    pub temperature: f64,
    /// Seed of the sampler, so a sampled generation can be repeated.
    pub seed: u64,
}

impl GenerationRequest {
    /// A greedy request for at most 256 tokens.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        GenerationRequest {
            messages,
            max_tokens: 256,
            temperature: 0.0,
            seed: 0,
        }
    }

    /// Checks the bounds a caller (an API client) could get wrong.
    pub fn validate(&self) -> Result<()> {
        if self.messages.is_empty() {
            return Err(GeneratorError::InvalidRequest(
                "a generation request needs at least one message".into(),
            ));
        }
        if self.max_tokens == 0 {
            return Err(GeneratorError::InvalidRequest(
                "max_tokens must be at least 1".into(),
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(GeneratorError::InvalidRequest(format!(
                "temperature must be within 0..=2, got {}",
                self.temperature
            )));
        }
        Ok(())
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its message (or the grammar's output was complete).
    Stop,
    /// `max_tokens` was reached.
    Length,
}

/// A finished generation.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Tokens of the prompt, as the backend counted them (0 when a server does not say).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Whether the text was produced under a grammar (constrained decoding).
    pub constrained: bool,
}

/// The probability a model gives a continuation after a prompt: what the information bottleneck
/// measures (does this context make the answer likelier?) and what a query-likelihood reranker
/// ranks by.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Likelihood {
    /// The natural-log probability of each token of the continuation, in order.
    pub token_logprobs: Vec<f32>,
}

impl Likelihood {
    /// log P(continuation | prompt): the sum over its tokens.
    pub fn total(&self) -> f32 {
        self.token_logprobs.iter().sum()
    }

    /// The mean log-probability per token (0 for an empty continuation), comparable across
    /// continuations of different lengths.
    pub fn mean(&self) -> f32 {
        if self.token_logprobs.is_empty() {
            0.0
        } else {
            self.total() / self.token_logprobs.len() as f32
        }
    }
}

/// Turns a chat into text.
///
/// `on_text` receives the text as it is produced (whole UTF-8 characters), so servers can stream
/// it; the returned [`Completion`] holds all of it.
pub trait Generator: Send + Sync {
    /// The model's name, as reported to users.
    fn model(&self) -> &str;

    /// Generates the assistant's reply to `request.messages`.
    fn generate(
        &self,
        request: &GenerationRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion>;

    /// Generates a reply that `grammar` accepts, masking every token that could not continue a
    /// valid output. Backends that cannot constrain decoding (HTTP servers) return `None`; their
    /// callers validate the free text instead.
    fn generate_constrained(
        &self,
        request: &GenerationRequest,
        grammar: &dyn OutputGrammar,
    ) -> Option<Result<Completion>> {
        let _ = (request, grammar);
        None
    }

    /// log P(`continuation` | `prompt`), token by token, with both texts as they are (no chat
    /// template: the caller writes the prompt it wants scored). The prompt must not be empty.
    /// Backends that cannot return prompt log-probabilities answer
    /// [`GeneratorError::Unsupported`] naming what is missing.
    fn likelihood(&self, prompt: &str, continuation: &str) -> Result<Likelihood> {
        let _ = (prompt, continuation);
        Err(GeneratorError::Unsupported {
            backend: self.model().to_string(),
            capability: "log-probabilities of a given text".into(),
        })
    }
}

/// The generator the configuration asks for: an [`HttpGenerator`] when a server URL is configured
/// (`IBEX_LLM_URL` or the config file), else the embedded SmolLM2 model (fetched on first use).
pub fn default_generator() -> Result<Arc<dyn Generator>> {
    let config = GeneratorConfig::from_env()?;
    config.build()
}
