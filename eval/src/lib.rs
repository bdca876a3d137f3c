//! Every evaluation of ibex, in one crate that the CLI, the tests and the benchmarks call.
//!
//! - [`beir`]: retrieval on BEIR-layout collections (queries, qrels, TREC run files), with
//!   [`evaluate_beir`] indexing the collection and scoring every judged query;
//! - [`compression`]: the compressor on NQ-open (gold passage plus retrieved distractors) against
//!   equal-budget baselines ([`evaluate_compression`]);
//! - [`rag`]: RAG answers on the same setting, with and without compression ([`evaluate_rag`]);
//! - [`recommendation`]: generative recommendation on MovieLens-100k, leave-one-out
//!   ([`evaluate_recommendation`]);
//! - [`metrics`]: every measure, with the definitions of trec_eval and SQuAD;
//! - [`nq`]: the NQ-open reader and its passage pool, shared by the compression and RAG loops;
//! - [`checkpoint`]: per-question results on disk, so that long evaluations resume where they stopped.
//!
//! An evaluation loads what it evaluates through the same library calls a user's program makes
//! (the indexer's [`ibex_indexer::index_corpus`], [`ibex_search::rank_documents`], the compressor
//! and the pipeline), so a figure measured here is the figure users get.

pub mod beir;
pub mod checkpoint;
pub mod compression;
mod error;
pub mod ib_score;
pub mod metrics;
pub mod nq;
pub mod rag;
pub mod recommendation;

pub use beir::{evaluate_beir, EvalReport};
pub use compression::{
    evaluate_compression, CompressEvalLlm, CompressEvalReport, CompressionFigures,
};
pub use error::{EvalError, Result};
pub use nq::NqRun;
pub use rag::{evaluate_rag, RagEvalReport, RagFigures};
pub use recommendation::{evaluate_recommendation, RecommendEvalReport};
