//! The `ibex` command line: parses arguments and calls the library; it holds no logic of its own.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ibex::search::{ChunkAggregation, Fusion, MetadataFilter};
use ibex::{
    Compressor, IbexError, IndexOptions, IndexProgress, Mode, Result, SearchRequest, TextKind,
};

/// candle allocates large temporaries on every layer; glibc's allocator returns them to the
/// system and page-faults them back in each time (a third of the embedding time went to the
/// kernel), while mimalloc keeps and reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ibex",
    version,
    about = "Hybrid (BM25 + dense) search over long documents, for retrieval-augmented generation."
)]
struct Cli {
    /// Where models run: auto (CUDA when built with it and a driver is present, else CPU), cpu,
    /// cuda or cuda:N. Also read from IBEX_DEVICE.
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the default model, index the bundled sample corpus, run its example queries, then
    /// serve the search page and API (Ctrl-C stops).
    Quickstart {
        /// Stop after the example queries instead of serving.
        #[arg(long)]
        no_serve: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Serve the REST API and search page over the indexes of a data directory.
    Serve {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Index a corpus: a BEIR folder, a .jsonl/.jsonl.gz file, or a folder of .txt/.md files.
    Index {
        corpus: PathBuf,
        /// The index directory.
        #[arg(long)]
        index: PathBuf,
        /// Embedding model of a new index: a local Hugging Face-format folder, or the default.
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        chunking: ChunkingArgs,
        /// Documents per commit.
        #[arg(long, default_value_t = 1000)]
        commit_every: usize,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete documents by id.
    Delete {
        /// The index directory.
        #[arg(long)]
        index: PathBuf,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Search an index.
    Search {
        /// The index directory.
        #[arg(long)]
        index: PathBuf,
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// Passages shown per document.
        #[arg(long, default_value_t = 2)]
        passages: usize,
        /// Metadata equality filter key=value (repeatable; all must hold).
        #[arg(long = "filter")]
        filters: Vec<String>,
        #[command(flatten)]
        ranking: RankingArgs,
        /// Print the results as one JSON object.
        #[arg(long)]
        json: bool,
        /// The query text.
        query: String,
    },
    /// Evaluate on a BEIR collection (indexing it into --index first unless already there).
    Eval {
        beir_dir: PathBuf,
        /// The index directory.
        #[arg(long)]
        index: PathBuf,
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        chunking: ChunkingArgs,
        #[command(flatten)]
        ranking: RankingArgs,
        /// Print the measures as one JSON object.
        #[arg(long)]
        json: bool,
        /// Write a TREC run file (for trec_eval or pytrec_eval).
        #[arg(long)]
        run_file: Option<PathBuf>,
    },
    /// Compress retrieved passages for a query (information-bottleneck sentence selection):
    /// from an index (retrieve, then compress) or from a JSONL file of passages.
    Compress {
        /// Retrieve the passages from this index (hybrid search).
        #[arg(
            long,
            conflicts_with = "passages",
            required_unless_present = "passages"
        )]
        index: Option<PathBuf>,
        /// JSONL file of passages: {"doc_id", "text", "offset"?} per line.
        #[arg(long)]
        passages: Option<PathBuf>,
        /// The question the compressed context must serve.
        #[arg(long)]
        query: String,
        /// Token budget of the kept text (default: 64).
        #[arg(long)]
        budget: Option<usize>,
        /// Documents retrieved from --index.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Print the compression as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the compressor on an NQ-open oracle file (gold passage plus retrieved distractors).
    EvalCompress {
        /// The NQ file (JSONL or .jsonl.gz, as ../shared/data/nq-open-oracle-dev).
        nq: PathBuf,
        /// Index of the passage pool (created from the file's passages unless it holds them).
        #[arg(long)]
        index: PathBuf,
        /// Distractor passages per question.
        #[arg(long, default_value_t = 9)]
        distractors: usize,
        /// Evaluate only the first N questions.
        #[arg(long)]
        limit: Option<usize>,
        /// Token budget (default: 64).
        #[arg(long)]
        budget: Option<usize>,
        /// Relevance floor τ of the selector.
        #[arg(long)]
        floor: Option<f32>,
        /// Weight of a sentence's passage in its usefulness (0 to 1).
        #[arg(long)]
        passage_weight: Option<f32>,
        /// β: cost per 100 kept tokens.
        #[arg(long)]
        beta: Option<f32>,
        /// Print the figures as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Answer a question from an index: retrieve (hybrid), compress, and ask the LLM (the embedded
    /// SmolLM2 unless IBEX_LLM_URL names an OpenAI-compatible server); prints the answer with its
    /// checked citations.
    Ask {
        question: String,
        #[arg(long)]
        index: PathBuf,
        /// Documents retrieved.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Send the retrieved passages whole instead of compressing them.
        #[arg(long)]
        no_compress: bool,
        /// Token budget of the compressed context (default: 64).
        #[arg(long)]
        budget: Option<usize>,
        /// Most tokens of the answer.
        #[arg(long, default_value_t = 200)]
        max_tokens: usize,
        /// Print one JSON object (answer, citations, context, tokens, timings) instead of streaming.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate RAG answers on an NQ-open oracle file (gold passage plus retrieved distractors):
    /// exact match and F1, with and without compression, and the tokens sent to the LLM.
    EvalRag {
        nq: PathBuf,
        /// Index of the passage pool (created from the file's passages unless it holds them).
        #[arg(long)]
        index: PathBuf,
        #[arg(long, default_value_t = 4)]
        distractors: usize,
        /// Evaluate only the first N questions.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Recommend catalog items for a user's history: candidates by embedding similarity (and
    /// co-occurrence when interaction data is known), ordered and explained by the LLM, constrained
    /// to real candidates.
    Recommend {
        /// The catalog index (one document per item).
        #[arg(long)]
        index: PathBuf,
        /// The user's items, oldest first: `ID,ID,...`, or `@FILE` with one id per line.
        #[arg(long, default_value = "")]
        history: String,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// What the user asks for, in their words ("something lighter").
        #[arg(long)]
        query: Option<String>,
        /// Interaction data (`user item [rating [timestamp]]` per line) for co-occurrence, instead
        /// of the index's installed interactions.
        #[arg(long)]
        interactions: Option<PathBuf>,
        /// Candidates the LLM chooses from.
        #[arg(long, default_value_t = 20)]
        candidates: usize,
        /// Skip the LLM's one-sentence reasons (faster).
        #[arg(long)]
        no_reasons: bool,
        #[arg(long)]
        json: bool,
    },
    /// Install interaction data (`user item [rating [timestamp]]` per line, plain or gzip) into a
    /// catalog index, so recommendations add co-occurrence to their candidates.
    IndexInteractions {
        file: PathBuf,
        #[arg(long)]
        index: PathBuf,
    },
    /// Evaluate generative recommendation on MovieLens-100k (leave-one-out on each user's last
    /// rating): HR@10 and NDCG@10 of popularity, item-kNN, embedding similarity and the full
    /// pipeline, with the LLM's error rates.
    EvalRecommend {
        /// The MovieLens-100k folder (u.item, u.genre, u.data[.gz]).
        movielens: PathBuf,
        /// Index of the catalog [default: a temporary folder].
        #[arg(long)]
        index: Option<PathBuf>,
        /// Evaluate only the first N users.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 20)]
        candidates: usize,
        /// Weight of the LLM's order against the candidate order (EVALUATION.md: with the
        /// embedded 135M model every weight above 0 lowered HR@10).
        #[arg(long, default_value_t = 0.1)]
        llm_weight: f32,
        /// Weight of embedding similarity against co-occurrence in the candidates.
        #[arg(long, default_value_t = 0.25)]
        embedding_weight: f32,
        /// Half-life (in items) of history items in co-occurrence scores.
        #[arg(long, default_value_t = 1.0)]
        recency_half_life: f32,
        /// Evaluate the candidate ranking and the baselines only (no LLM).
        #[arg(long)]
        no_llm: bool,
        #[arg(long)]
        json: bool,
    },
    /// Embed texts: one per line on stdin (or JSONL with a "text" field); one JSON array per line out.
    Embed {
        #[arg(long, default_value = ibex::DEFAULT_MODEL_ID)]
        model: String,
        /// Embed as queries (for models that format queries differently).
        #[arg(long)]
        query: bool,
    },
}

/// How documents are cut into chunks (used when an index is created).
#[derive(clap::Args)]
struct ChunkingArgs {
    /// Tokens per chunk (new index only).
    #[arg(long, default_value_t = 200)]
    chunk_tokens: usize,
    /// Tokens shared by consecutive chunks (new index only).
    #[arg(long, default_value_t = 50)]
    overlap: usize,
}

impl ChunkingArgs {
    fn params(&self) -> ibex::ChunkingParams {
        ibex::ChunkingParams {
            chunk_tokens: self.chunk_tokens,
            overlap_tokens: self.overlap,
        }
    }
}

/// How documents are ranked.
#[derive(clap::Args)]
struct RankingArgs {
    /// bm25, dense or hybrid.
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Hybrid only: weighted fusion alpha × dense + (1 − alpha) × BM25 (normalized scores)
    /// instead of reciprocal rank fusion.
    #[arg(long)]
    alpha: Option<f32>,
    /// Score a document by the sum of its best K chunks instead of its best chunk.
    #[arg(long)]
    chunk_sum: Option<usize>,
}

/// Options of the server (`ibex serve`, `ibex quickstart`).
#[derive(clap::Args)]
struct ServerArgs {
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
}

impl ServerArgs {
    fn config(self) -> Result<ibex::web::ServerConfig> {
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
        config.limits = ibex::web::Limits {
            max_body_bytes: self.max_body_mib.max(1) * 1024 * 1024,
            max_batch_documents: self.max_batch.max(1),
            max_query_chars: self.max_query_chars.max(1),
            max_top_k: self.max_top_k.clamp(1, ibex::search::MAX_TOP_K),
            max_concurrent_requests: self.max_concurrent.max(1),
            read_timeout: std::time::Duration::from_secs(self.timeout_secs.max(1)),
            ..ibex::web::Limits::default()
        };
        Ok(config)
    }
}

/// Serves until Ctrl-C or SIGTERM, printing the address once the indexes are open.
fn serve(config: ibex::web::ServerConfig, page_query: &str) -> Result<()> {
    // candle's quantized kernels (the embedded LLM) use a spinning pool of CANDLE_NUM_THREADS
    // threads, sized once. A server shares its cores with embedding and search, and with one core
    // busy, two-thread decoding measured 4-8x slower than one thread (README, "Threads").
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let data_dir = config.data_dir.clone();
    let keys = !config.api_keys.is_empty();
    let page_query = page_query.to_string();
    ibex::web::serve_blocking(config, move |addr| {
        println!("Serving {} at http://{addr}/", data_dir.display());
        println!("Search page: http://{addr}/{page_query}");
        println!(
            "API: http://{addr}/v1/indexes (OpenAPI: http://{addr}/openapi.json){}",
            if keys {
                "; send an API key as Authorization: Bearer <key>"
            } else {
                ""
            }
        );
        println!("Press Ctrl-C to stop.");
        let _ = std::io::stdout().flush();
    })?;
    eprintln!("ibex: stopped cleanly.");
    Ok(())
}

impl RankingArgs {
    /// A request for `query` with these settings.
    fn request(&self, query: String) -> Result<SearchRequest> {
        let mut request = SearchRequest::new(query);
        request.mode = self.mode.parse::<Mode>()?;
        if let Some(alpha) = self.alpha {
            request.fusion = Fusion::Weighted { alpha };
        }
        if let Some(k) = self.chunk_sum {
            request.aggregation = ChunkAggregation::TopKSum(k);
        }
        Ok(request)
    }
}

fn progress_reporter() -> impl FnMut(IndexProgress) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} docs  {per_sec} docs/s  {msg}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = std::time::Instant::now();
    move |p: IndexProgress| {
        if let Some(bar) = &bar {
            bar.set_length(p.documents_total as u64);
            bar.set_position(p.documents_done as u64);
            let rate = p.chunks_embedded as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{} chunks ({rate:.0} chunks/s)", p.chunks_embedded));
            if p.documents_done >= p.documents_total {
                bar.finish_and_clear();
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Quickstart { no_serve, server } => {
            let config = server.config()?;
            ibex::quickstart::run(&mut std::io::stdout(), &config.data_dir)?;
            if no_serve {
                return Ok(());
            }
            println!();
            serve(config, &format!("?index={}", ibex::quickstart::INDEX_NAME))
        }
        Command::Serve { server } => serve(server.config()?, ""),
        Command::Index {
            corpus,
            index,
            model,
            chunking,
            commit_every,
            json,
        } => {
            let options = IndexOptions {
                model,
                chunking: chunking.params(),
                commit_every,
                ..IndexOptions::default()
            };
            let report = ibex::index_corpus(&corpus, &index, &options, progress_reporter())?;
            if !report.skipped_empty.is_empty() {
                let shown: Vec<&str> = report
                    .skipped_empty
                    .iter()
                    .take(20)
                    .map(String::as_str)
                    .collect();
                let more = report.skipped_empty.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                eprintln!(
                    "warning: skipped {} documents with neither title nor text: {}{more}",
                    report.skipped_empty.len(),
                    shown.join(", ")
                );
            }
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                let embedded = report.added + report.replaced;
                eprintln!(
                    "indexed {} documents into {} in {:.1}s: {} added, {} replaced, {} unchanged; {} chunks embedded ({:.1} docs/s, {:.1} chunks/s); the index holds {} documents, {} chunks",
                    report.added + report.replaced + report.unchanged,
                    index.display(),
                    report.seconds,
                    report.added,
                    report.replaced,
                    report.unchanged,
                    report.chunks_embedded,
                    embedded as f64 / report.seconds.max(1e-9),
                    report.chunks_embedded as f64 / report.seconds.max(1e-9),
                    report.documents_in_index,
                    report.chunks_in_index
                );
            }
            Ok(())
        }
        Command::Delete { index, ids } => {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let deleted = ibex::delete_documents(&index, &ids)?;
            eprintln!(
                "deleted {deleted} of {} documents from {}",
                ids.len(),
                index.display()
            );
            Ok(())
        }
        Command::Search {
            index,
            top_k,
            passages,
            filters,
            ranking,
            json,
            query,
        } => {
            let mut request = ranking.request(query)?;
            let (index, embedder) = if request.mode == Mode::Bm25 {
                (ibex::Index::open(&index)?, None)
            } else {
                let (index, embedder) = ibex::open_index(&index, None)?;
                (index, Some(embedder))
            };
            request.top_k = top_k;
            request.passages = passages;
            request.filters = filters
                .iter()
                .map(|f| f.parse::<MetadataFilter>())
                .collect::<std::result::Result<_, _>>()?;
            let results = ibex::search::search(&index, embedder.as_deref(), &request)?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&results).unwrap_or_default()
                )
                .map_err(stdout_error)?;
            } else {
                ibex::quickstart::print_results(&mut out, &results).map_err(stdout_error)?;
            }
            Ok(())
        }
        Command::Eval {
            beir_dir,
            index,
            model,
            chunking,
            ranking,
            json,
            run_file,
        } => {
            let request = ranking.request(String::new())?;
            let mode = request.mode;
            let options = IndexOptions {
                model,
                chunking: chunking.params(),
                ..IndexOptions::default()
            };
            let report =
                ibex::evaluate_beir(&beir_dir, &index, &request, &options, run_file.as_deref())?;
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                let m = report.mean;
                println!(
                    "{} ({mode}, {} queries): nDCG@10 {:.4}  Recall@100 {:.4}  MAP {:.4}  MRR@10 {:.4}",
                    beir_dir.display(),
                    report.queries,
                    m.ndcg_at_10,
                    m.recall_at_100,
                    m.map,
                    m.mrr_at_10
                );
            }
            Ok(())
        }
        Command::Compress {
            index,
            passages,
            query,
            budget,
            top_k,
            json,
        } => {
            let params = ibex::compressor::IbParams::default();
            let compression = match (index, passages) {
                (Some(index), _) => {
                    ibex::compress::compress_from_index(&index, &query, top_k, budget, params)?
                }
                (None, Some(file)) => {
                    let passages = ibex::compress::read_passages(&file)?;
                    let embedder = ibex::open_embedder(ibex::DEFAULT_MODEL_ID)?;
                    ibex::compress::default_compressor(embedder, params)
                        .compress(&query, &passages, budget)?
                }
                (None, None) => {
                    return Err(IbexError::Usage(
                        "give --index DIR or --passages FILE".into(),
                    ))
                }
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&compression).unwrap_or_default()
                );
            } else {
                println!("{}", compression.text);
                eprintln!(
                    "kept {} of {} tokens ({:.1}%) in {} spans",
                    compression.kept_tokens,
                    compression.total_tokens,
                    100.0 * compression.rate(),
                    compression.spans.len()
                );
            }
            Ok(())
        }
        Command::EvalCompress {
            nq,
            index,
            distractors,
            limit,
            budget,
            floor,
            passage_weight,
            beta,
            json,
        } => {
            let mut params = ibex::compressor::IbParams::default();
            if budget.is_some() {
                params.default_budget = budget;
            }
            if let Some(floor) = floor {
                params.relevance_floor = floor;
            }
            if let Some(weight) = passage_weight {
                params.passage_weight = weight;
            }
            if let Some(beta) = beta {
                params.beta = beta;
            }
            let report =
                ibex::compress::evaluate_compression(&nq, &index, distractors, limit, params)?;
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!(
                    "{} questions ({} with an answer in their context)",
                    report.ib.questions, report.answerable
                );
                println!("{:<18} {:>12} {:>10}", "method", "compression", "retention");
                println!(
                    "{:<18} {:>11.1}% {:>9.1}%",
                    "ib",
                    100.0 * report.ib.compression,
                    100.0 * report.ib.retention
                );
                for (name, f) in &report.baselines {
                    println!(
                        "{:<18} {:>11.1}% {:>9.1}%",
                        name,
                        100.0 * f.compression,
                        100.0 * f.retention
                    );
                }
            }
            Ok(())
        }
        Command::Ask {
            question,
            index,
            top_k,
            no_compress,
            budget,
            max_tokens,
            json,
        } => {
            let generator = ibex::generator::default_generator()?;
            let options = ibex::pipeline::AnswerOptions {
                top_k,
                compress: !no_compress,
                budget,
                max_tokens,
                ..Default::default()
            };
            let mut stdout = std::io::stdout();
            let answer =
                ibex::rag::ask(&index, &question, generator.as_ref(), &options, &mut |t| {
                    if !json {
                        let _ = write!(stdout, "{t}");
                        let _ = stdout.flush();
                    }
                })?;
            if json {
                println!("{}", serde_json::to_string(&answer).unwrap_or_default());
                return Ok(());
            }
            println!();
            if !answer.invalid_citations.is_empty() {
                eprintln!(
                    "(removed citations of passages that were not in the context: {:?})",
                    answer.invalid_citations
                );
            }
            for c in &answer.citations {
                println!(
                    "[{}] {} ({}) chars {}-{}",
                    c.number, c.title, c.doc_id, c.start, c.end
                );
            }
            eprintln!(
                "{}: context {} → {} tokens, prompt {} tokens, {:.1} s",
                answer.model,
                answer.tokens.before_compression,
                answer.tokens.after_compression,
                answer.tokens.prompt,
                answer.timings.total_ms / 1000.0
            );
            Ok(())
        }
        Command::EvalRag {
            nq,
            index,
            distractors,
            limit,
            json,
        } => {
            let generator = ibex::generator::default_generator()?;
            let report = ibex::rag::evaluate_rag(
                &nq,
                &index,
                distractors,
                limit,
                generator.as_ref(),
                |done, total| {
                    if std::io::stderr().is_terminal() {
                        eprint!("\r{done}/{total} questions");
                    }
                },
            )?;
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!(
                    "{}: {} questions, gold passage + {} distractors",
                    report.model, report.questions, report.distractors
                );
                println!(
                    "{:<14} {:>6} {:>6} {:>9} {:>14} {:>15} {:>9}",
                    "context",
                    "EM",
                    "F1",
                    "contains",
                    "prompt tokens",
                    "context tokens",
                    "s/answer"
                );
                for (name, f) in [
                    ("compressed", report.compressed),
                    ("uncompressed", report.uncompressed),
                ] {
                    println!(
                        "{:<14} {:>6.3} {:>6.3} {:>9.3} {:>14.0} {:>15.0} {:>9.2}",
                        name,
                        f.exact_match,
                        f.f1,
                        f.contains_answer,
                        f.prompt_tokens,
                        f.context_tokens,
                        f.seconds_per_answer
                    );
                }
            }
            Ok(())
        }
        Command::Recommend {
            index,
            history,
            k,
            query,
            interactions,
            candidates,
            no_reasons,
            json,
        } => {
            let history = ibex::recommend::parse_history(&history)?;
            let generator = ibex::generator::default_generator()?;
            let options = ibex::pipeline::RecommendOptions {
                k,
                candidates,
                with_reasons: !no_reasons,
                ..Default::default()
            };
            let result = ibex::recommend::recommend_from_index(
                &index,
                &history,
                query.as_deref(),
                interactions.as_deref(),
                generator.as_ref(),
                &options,
            )?;
            if json {
                println!("{}", serde_json::to_string(&result).unwrap_or_default());
                return Ok(());
            }
            for (rank, item) in result.items.iter().enumerate() {
                match &item.reason {
                    Some(reason) => {
                        println!("{:>2}. {} {}: {reason}", rank + 1, item.id, item.title)
                    }
                    None => println!("{:>2}. {} {}", rank + 1, item.id, item.title),
                }
            }
            let e = result.errors;
            eprintln!(
                "{} ({}): {} candidates; output errors: {} not candidates, {} duplicates, {} from the history, {} unparseable{}",
                result.model,
                if result.constrained { "constrained decoding" } else { "validated output" },
                result.candidates.len(),
                e.candidate_errors,
                e.duplicates,
                e.history_repeats,
                e.unparseable,
                if e.fell_back { "; fell back to the candidate ranking" } else { "" }
            );
            Ok(())
        }
        Command::IndexInteractions { file, index } => {
            ibex::Index::open(&index)?;
            let count = ibex::pipeline::Interactions::install(&file, &index)?;
            println!("installed {count} interactions into {}", index.display());
            Ok(())
        }
        Command::EvalRecommend {
            movielens,
            index,
            limit,
            candidates,
            llm_weight,
            embedding_weight,
            recency_half_life,
            no_llm,
            json,
        } => {
            let generator = if no_llm {
                None
            } else {
                Some(ibex::generator::default_generator()?)
            };
            let options = ibex::pipeline::RecommendOptions {
                candidates,
                llm_weight,
                embedding_weight,
                recency_half_life: Some(recency_half_life),
                with_reasons: false,
                ..Default::default()
            };
            let temporary = tempfile::tempdir().map_err(|e| IbexError::Io {
                context: "creating a temporary index folder".into(),
                source: e,
            })?;
            let index = index.unwrap_or_else(|| temporary.path().join("movielens"));
            let report = ibex::recommend::evaluate_recommendation(
                &movielens,
                &index,
                limit,
                generator.as_deref(),
                &options,
                |done, total| {
                    if std::io::stderr().is_terminal() {
                        eprint!("\r{done}/{total} users");
                    }
                },
            )?;
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!(
                    "{} users, model {} ({})",
                    report.users,
                    report.model,
                    if report.constrained {
                        "constrained decoding"
                    } else {
                        "validated output"
                    }
                );
                println!("{:<22} {:>7} {:>8}", "method", "HR@10", "NDCG@10");
                println!(
                    "{:<22} {:>7.4} {:>8.4}",
                    "ibex (full pipeline)", report.hr_at_10, report.ndcg_at_10
                );
                for (name, f) in &report.baselines {
                    println!("{:<22} {:>7.4} {:>8.4}", name, f.hr_at_10, f.ndcg_at_10);
                }
                for (weight, f) in &report.llm_weight_sweep {
                    println!(
                        "{:<22} {:>7.4} {:>8.4}",
                        format!("llm_weight {weight}"),
                        f.hr_at_10,
                        f.ndcg_at_10
                    );
                }
                println!(
                    "LLM output error rates: candidate {:.3}, duplicate {:.3}, history {:.3}, unparseable {:.3}; fallback {:.3}; {:.2} s/user",
                    report.candidate_error_rate, report.duplicate_rate, report.history_repeat_rate, report.unparseable_rate, report.fallback_rate, report.seconds_per_user
                );
            }
            Ok(())
        }
        Command::Embed { model, query } => embed_stdin(
            &model,
            if query {
                TextKind::Query
            } else {
                TextKind::Document
            },
        ),
    }
}

fn stdout_error(e: std::io::Error) -> IbexError {
    IbexError::Io {
        context: "writing to stdout".into(),
        source: e,
    }
}

fn embed_stdin(model: &str, kind: TextKind) -> Result<()> {
    let embedder = ibex::open_embedder(model)?;
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut batch: Vec<String> = Vec::new();
    let flush = |batch: &mut Vec<String>, out: &mut dyn Write| -> Result<()> {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        for vector in embedder.embed(&refs, kind)? {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&vector).unwrap_or_default()
            )
            .map_err(stdout_error)?;
        }
        batch.clear();
        Ok(())
    };
    for (number, line) in stdin.lines().enumerate() {
        let line = line.map_err(|e| IbexError::Io {
            context: format!("reading stdin line {}", number + 1),
            source: e,
        })?;
        // A JSON object with a "text" field is read as such; anything else is the text itself.
        let text = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(object)) => match object.get("text") {
                Some(serde_json::Value::String(text)) => text.clone(),
                _ => {
                    return Err(IbexError::Usage(format!(
                        "stdin line {}: a JSON object needs a string \"text\" field",
                        number + 1
                    )))
                }
            },
            _ => line,
        };
        batch.push(text);
        if batch.len() == 64 {
            flush(&mut batch, &mut out)?;
        }
    }
    flush(&mut batch, &mut out)?;
    out.flush().map_err(stdout_error)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(device) = &cli.device {
        // Checked here so a bad name fails before any work; models read it when they load.
        if let Err(e) = ibex::embedder::device::parse_device(device) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        std::env::set_var(ibex::embedder::device::DEVICE_ENV, device);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
