//! Arguments shared by several commands.

use std::path::PathBuf;

use ibex::search::{ChunkAggregation, Fusion};
use ibex::{IbexError, Mode, Result, SearchRequest};

/// The index a command fills, and the model and chunking it gets when it is new.
#[derive(clap::Args)]
pub struct IndexTarget {
    /// The index directory.
    #[arg(long)]
    pub index: PathBuf,
    /// Embedding model of a new index: a local Hugging Face-format folder, or the default.
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub chunking: ChunkingArgs,
}

impl IndexTarget {
    /// Indexing options for this target, with models on `device`.
    pub fn options(&self, device: &ibex::Device) -> ibex::IndexOptions {
        ibex::IndexOptions {
            model: self.model.clone(),
            device: Some(device.clone()),
            chunking: self.chunking.params(),
            ..ibex::IndexOptions::default()
        }
    }
}

/// How documents are cut into chunks (used when an index is created).
#[derive(clap::Args)]
pub struct ChunkingArgs {
    /// Tokens per chunk (new index only).
    #[arg(long, default_value_t = 200)]
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks (new index only).
    #[arg(long, default_value_t = 50)]
    pub overlap: usize,
}

impl ChunkingArgs {
    /// The chunking parameters these arguments give.
    pub fn params(&self) -> ibex::ChunkingParams {
        ibex::ChunkingParams {
            chunk_tokens: self.chunk_tokens,
            overlap_tokens: self.overlap,
        }
    }
}

/// How documents are ranked.
#[derive(clap::Args)]
pub struct RankingArgs {
    /// bm25, dense or hybrid.
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    /// Hybrid only: weighted fusion alpha × dense + (1 − alpha) × BM25 (normalized scores)
    /// instead of reciprocal rank fusion.
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Score a document by the sum of its best K chunks instead of its best chunk.
    #[arg(long)]
    pub chunk_sum: Option<usize>,
    /// Hybrid only: the reciprocal rank fusion constant (default 60).
    #[arg(long, conflicts_with = "alpha")]
    pub rrf_k: Option<f32>,
    /// Pseudo-relevance feedback: RM3 expands the BM25 query from the first round's best
    /// documents (as Anserini's -rm3). The --prf-* options and --rocchio imply it.
    #[arg(long)]
    pub prf: bool,
    /// Feedback documents (default 10).
    #[arg(long)]
    pub prf_docs: Option<usize>,
    /// RM3 expansion terms (default 10; 0: no RM3, only --rocchio).
    #[arg(long)]
    pub prf_terms: Option<usize>,
    /// Weight of the original query's terms against the expansion's, in [0, 1] (default 0.5).
    #[arg(long)]
    pub prf_weight: Option<f32>,
    /// Rocchio feedback on the dense query: weight of the feedback documents' mean vector
    /// (default 0: off).
    #[arg(long)]
    pub rocchio: Option<f32>,
    /// Where feedback documents come from: `own` (each list's first round) or `fused` (the
    /// hybrid first round, for both lists).
    #[arg(long)]
    pub prf_from: Option<String>,
}

impl RankingArgs {
    /// A request for `query` with these settings.
    pub fn request(&self, query: String) -> Result<SearchRequest> {
        let mut request = SearchRequest::new(query);
        request.mode = self.mode.parse::<Mode>()?;
        if let Some(alpha) = self.alpha {
            request.fusion = Fusion::Weighted { alpha };
        }
        if let Some(k) = self.chunk_sum {
            request.aggregation = ChunkAggregation::TopKSum(k);
        }
        if let Some(k) = self.rrf_k {
            request.fusion = Fusion::ReciprocalRank { k };
        }
        request.feedback = self.feedback()?;
        Ok(request)
    }

    /// The feedback settings the --prf options give (`None` when none is given).
    fn feedback(&self) -> Result<Option<ibex::search::Feedback>> {
        let any = self.prf
            || self.prf_docs.is_some()
            || self.prf_terms.is_some()
            || self.prf_weight.is_some()
            || self.rocchio.is_some()
            || self.prf_from.is_some();
        if !any {
            return Ok(None);
        }
        let options = ibex::search::FeedbackOptions {
            documents: self.prf_docs,
            terms: self.prf_terms,
            original_weight: self.prf_weight,
            rocchio: self.rocchio,
            from: self.prf_from.clone(),
        };
        // The same settings (and the same refusal of an unknown source) as a request body's
        // `feedback` object; the message names the flag the user typed.
        let feedback = options.settings().map_err(|_| {
            IbexError::Usage(format!(
                "--prf-from must be `own` or `fused`, not `{}`",
                self.prf_from.as_deref().unwrap_or_default()
            ))
        })?;
        Ok(Some(feedback))
    }
}

/// Options of the server (`ibex serve`, `ibex quickstart`).
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Directory of the served indexes, one subdirectory each [default: $IBEX_HOME/data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:7700")]
    addr: std::net::SocketAddr,
    /// An API key, `KEY` (read and write), `KEY:read` or `KEY:write`; repeatable. Also read from
    /// IBEX_API_KEYS (comma-separated). Without keys the server listens on loopback only.
    #[arg(long = "api-key", value_name = "KEY[:SCOPES]")]
    api_keys: Vec<String>,
    /// Listen on a non-loopback address even without API keys.
    #[arg(long)]
    insecure_listen_any: bool,
    /// Let index creation name a model folder on this machine (otherwise only the default model).
    #[arg(long)]
    allow_model_paths: bool,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 32)]
    max_body_mib: usize,
    /// Most documents per write request.
    #[arg(long, default_value_t = 1000)]
    max_batch: usize,
    /// Longest query, in characters.
    #[arg(long, default_value_t = 2000)]
    max_query_chars: usize,
    /// Largest top_k.
    #[arg(long, default_value_t = 1000)]
    max_top_k: usize,
    /// Requests served at once (more wait).
    #[arg(long, default_value_t = 64)]
    max_concurrent: usize,
    /// Seconds a read may take, waiting included.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Seconds a request body may go without sending a byte before the request gets 408.
    #[arg(long, default_value_t = 30.0)]
    body_idle_timeout_secs: f64,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C; at the deadline
    /// writes not yet committed are abandoned (nothing of them is committed) and connections
    /// closed.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace_secs: f64,
    /// Longest document id, in bytes.
    #[arg(long, default_value_t = 512)]
    max_id_bytes: usize,
    /// Longest document title, in bytes.
    #[arg(long, default_value_t = 65536)]
    max_title_bytes: usize,
    /// Largest document metadata, in bytes of JSON.
    #[arg(long, default_value_t = 65536)]
    max_metadata_bytes: usize,
    /// Most top-level metadata keys of a document.
    #[arg(long, default_value_t = 256)]
    max_metadata_keys: usize,
    /// Most tokens one LLM request (answer, chat completion, recommendation) may generate.
    #[arg(long, default_value_t = 2048)]
    max_generated_tokens: usize,
}

/// A duration from a number of seconds given on the command line.
fn seconds(value: f64, flag: &str) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            IbexError::Usage(format!(
                "--{flag} must be a positive number of seconds, not {value}"
            ))
        })
}

impl ServerArgs {
    /// The server configuration these arguments (and IBEX_API_KEYS) give, with models on `device`.
    pub fn config(self, device: &ibex::Device) -> Result<ibex::web::ServerConfig> {
        let data_dir = self.data_dir.unwrap_or_else(ibex::default_data_dir);
        let mut config = ibex::web::ServerConfig::new(data_dir);
        config.addr = self.addr;
        let mut keys = Vec::new();
        if let Ok(list) = std::env::var("IBEX_API_KEYS") {
            keys.extend(ibex::web::parse_keys(&list).map_err(IbexError::Usage)?);
        }
        for spec in &self.api_keys {
            keys.push(spec.parse().map_err(IbexError::Usage)?);
        }
        config.api_keys = keys;
        config.insecure_listen_any = self.insecure_listen_any;
        config.allow_model_paths = self.allow_model_paths;
        config.device = Some(device.clone());
        config.limits = ibex::web::Limits {
            max_body_bytes: self.max_body_mib.max(1) * 1024 * 1024,
            max_batch_documents: self.max_batch.max(1),
            max_query_chars: self.max_query_chars.max(1),
            max_top_k: self.max_top_k.clamp(1, ibex::search::MAX_TOP_K),
            max_concurrent_requests: self.max_concurrent.max(1),
            read_timeout: std::time::Duration::from_secs(self.timeout_secs.max(1)),
            body_idle_timeout: seconds(self.body_idle_timeout_secs, "body-idle-timeout-secs")?,
            shutdown_grace: seconds(self.shutdown_grace_secs, "shutdown-grace-secs")?,
            max_generated_tokens: self.max_generated_tokens.max(1),
            documents: ibex::indexer::DocumentLimits {
                max_id_bytes: self.max_id_bytes.max(1),
                max_title_bytes: self.max_title_bytes,
                max_metadata_bytes: self.max_metadata_bytes,
                max_metadata_keys: self.max_metadata_keys,
            },
            ..ibex::web::Limits::default()
        };
        Ok(config)
    }
}
