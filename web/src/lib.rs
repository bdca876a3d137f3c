//! ibex's REST API and search page, on axum.
//!
//! This crate translates HTTP into calls of the library crates and holds no search logic: the
//! named indexes and their concurrency live in [`ibex_indexer::Catalog`], searching in
//! [`ibex_search::search`], embedding (batched across requests, on its own threads) in
//! [`ibex_embedder::BatchingEmbedder`]. What is here: routing, request and response types (from
//! which the OpenAPI document is generated), authentication, limits, metrics, errors as JSON,
//! graceful shutdown, and the static search page.

pub mod api;
pub mod auth;
pub mod body;
pub mod error;
pub mod generate;
pub mod metrics;
mod openapi;
pub mod request_log;
pub mod search;
pub mod snapshots;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ibex_embedder::{BatchingEmbedder, BatchingOptions, Embedder};
use ibex_indexer::{Catalog, IndexError, ModelLoader};
use tokio::sync::Semaphore;

pub use auth::{parse_keys, ApiKey, Scopes};
pub use error::ApiError;

/// Bounds on what one request may ask for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Most documents (or ids) in one write (more: 413).
    pub max_batch_documents: usize,
    /// Longest query, in characters (longer: 422).
    pub max_query_chars: usize,
    /// Largest `top_k` (larger: 422).
    pub max_top_k: usize,
    /// Requests served at once; more wait for a slot, within the timeout.
    pub max_concurrent_requests: usize,
    /// Longest a read (search, lookup, listing) may take, waiting for a slot included (longer: 503).
    pub read_timeout: Duration,
    /// Longest a write may take to be answered. A write whose answer timed out may still commit:
    /// read the document back to know.
    pub write_timeout: Duration,
    /// Limit on an LLM request (answers, recommendations, chat completions), waiting included.
    pub generate_timeout: Duration,
    /// Most tokens one LLM request may generate. Answers and chat completions asking for more
    /// get this many (as OpenAI servers cap `max_tokens`); a recommendation whose list could need
    /// more (items x tokens per item) is refused with 422. A generation keeps its CPU until it
    /// ends even when its client is gone, so this bounds what one request can take.
    pub max_generated_tokens: usize,
    /// Longest a request body may go without sending a byte (longer: 408, and the connection is
    /// closed). Measured between reads, not over the whole body, so a large upload on a slow
    /// link is not cut while it makes progress.
    pub body_idle_timeout: Duration,
    /// After SIGTERM or Ctrl-C, how long requests in flight may take to finish. At the deadline
    /// a write not yet committed is abandoned (nothing of it is committed, its client gets 503
    /// `write_abandoned`) and the remaining connections are closed.
    pub shutdown_grace: Duration,
    /// Bounds on document ids, titles and metadata (over: 422).
    pub documents: ibex_indexer::DocumentLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 * 1024 * 1024,
            max_batch_documents: 1_000,
            max_query_chars: 2_000,
            max_top_k: 1_000,
            max_concurrent_requests: 64,
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(600),
            generate_timeout: Duration::from_secs(300),
            max_generated_tokens: 2048,
            body_idle_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            documents: ibex_indexer::DocumentLimits::default(),
        }
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the indexes live (one directory each).
    pub data_dir: PathBuf,
    /// Address to listen on (port 0: any free port).
    pub addr: SocketAddr,
    /// With no key, every request is allowed: the server then listens on loopback only, unless
    /// `insecure_listen_any`.
    pub api_keys: Vec<ApiKey>,
    /// Listen on a non-loopback address even without API keys.
    pub insecure_listen_any: bool,
    /// Model of indexes created without one.
    pub default_model: String,
    /// Whether a create request may name a model folder on the server.
    pub allow_model_paths: bool,
    /// Where models run; `None` means the device `IBEX_DEVICE` names (default: auto).
    pub device: Option<ibex_embedder::Device>,
    /// Bounds on what one request may ask for.
    pub limits: Limits,
}

impl ServerConfig {
    /// A configuration with ibex's defaults: loopback port 7700, no keys, default limits.
    pub fn new(data_dir: PathBuf) -> Self {
        ServerConfig {
            data_dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 7700)),
            api_keys: Vec::new(),
            insecure_listen_any: false,
            default_model: ibex_embedder::DEFAULT_MODEL_ID.to_string(),
            allow_model_paths: false,
            device: None,
            limits: Limits::default(),
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("refusing to listen on {0} without API keys: anyone who can reach it could read and change every index. Configure keys (--api-key or IBEX_API_KEYS), listen on 127.0.0.1, or pass --insecure-listen-any")]
    /// Listening beyond loopback without API keys was refused.
    OpenWithoutKeys(SocketAddr),

    #[error("cannot listen on {addr}: {source}{hint}")]
    /// The address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
        /// What to do about it (another process holds the port...).
        hint: &'static str,
    },

    #[error("cannot open the data directory: {0}")]
    /// The data directory could not be opened.
    Catalog(#[from] IndexError),

    #[error("could not set up metrics: {0}")]
    /// The metrics registry could not be set up.
    Metrics(#[from] prometheus::Error),

    #[error("server error: {0}")]
    /// Serving failed.
    Io(#[from] std::io::Error),
}

/// State shared by every request.
#[derive(Clone)]
pub struct AppState {
    /// The server's configuration.
    pub config: Arc<ServerConfig>,
    /// Set once the indexes are open (until then the API answers 503 and /readyz says so).
    pub catalog: Arc<OnceLock<Arc<Catalog>>>,
    /// Request counters, latencies and the index gauges of /metrics.
    pub metrics: Arc<metrics::Metrics>,
    slots: Arc<Semaphore>,
    /// The LLM, built on first use (see `generate::generator`).
    pub(crate) generator: Arc<Mutex<Option<Arc<dyn ibex_generator::Generator>>>>,
    /// Co-occurrence of each catalog index's interaction file, keyed by path, with the file's
    /// modification time it was built from.
    pub(crate) co_occurrence: Arc<Mutex<CoOccurrenceCache>>,
    /// Write requests being handled (bodies read, handler running): what shutdown waits for
    /// after abandoning writes, so that their clients get their answer before connections close.
    writes_running: Arc<std::sync::atomic::AtomicUsize>,
    /// Open search cursors, each pinning the index snapshot its search started on.
    pub(crate) cursors: Arc<ibex_search::Cursors>,
}

type CoOccurrenceCache = std::collections::HashMap<
    std::path::PathBuf,
    (
        std::time::SystemTime,
        Arc<ibex_pipeline::interactions::CoOccurrence>,
    ),
>;

impl AppState {
    /// State for `config`, with no catalog yet.
    pub fn new(config: ServerConfig) -> Result<AppState, ServerError> {
        let slots = Arc::new(Semaphore::new(config.limits.max_concurrent_requests.max(1)));
        Ok(AppState {
            config: Arc::new(config),
            catalog: Arc::new(OnceLock::new()),
            metrics: Arc::new(metrics::Metrics::new()?),
            slots,
            generator: Arc::new(Mutex::new(None)),
            co_occurrence: Arc::new(Mutex::new(Default::default())),
            writes_running: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            cursors: Arc::new(ibex_search::Cursors::default()),
        })
    }

    /// The model loader the catalog uses: each model is loaded once and served through a
    /// [`BatchingEmbedder`] whose batch sizes and queue depth feed the metrics.
    pub fn model_loader(&self) -> ModelLoader {
        let metrics = self.metrics.clone();
        let device = self.config.device.clone();
        Arc::new(move |spec: &str| {
            let model = match &device {
                Some(device) => ibex_embedder::load_model_on(spec, device)?,
                None => ibex_embedder::load_model(spec)?,
            };
            let batch_size = metrics.batch_size.clone();
            let batching = Arc::new(BatchingEmbedder::new(
                model,
                BatchingOptions {
                    observer: Some(Arc::new(move |n| batch_size.observe(n as f64))),
                    ..BatchingOptions::default()
                },
            )?);
            if let Ok(mut embedders) = metrics.embedders.lock() {
                embedders.push(batching.clone());
            }
            Ok(batching as Arc<dyn Embedder>)
        })
    }

    /// Opens the data directory's indexes (loading their models) and makes the API ready.
    /// Indexes that fail to open are reported on stderr and not served; their files are kept.
    pub fn open_catalog(&self) -> Result<Arc<Catalog>, ServerError> {
        let (catalog, unopened) = Catalog::open(&self.config.data_dir, self.model_loader())?;
        for failed in unopened {
            eprintln!(
                "ibex: not serving index {:?}: {} (its files are left as they are)",
                failed.name, failed.error
            );
        }
        let catalog = Arc::new(catalog);
        let _ = self.catalog.set(catalog.clone());
        Ok(catalog)
    }

    /// Stops accepting writes after those in progress, and stops the embedding workers.
    pub fn close(&self) {
        if let Some(catalog) = self.catalog.get() {
            catalog.close();
        }
        if let Ok(embedders) = self.metrics.embedders.lock() {
            for embedder in embedders.iter() {
                embedder.shutdown();
            }
        }
    }
}

/// The search page: one static file, calling the public API only.
const PAGE: &str = include_str!("page.html");

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.catalog.get().is_some() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::unavailable("not_ready", "the server is opening its indexes and models")
            .into_response()
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let catalog = state.catalog.get().cloned();
    let metrics = state.metrics.clone();
    let text = tokio::task::spawn_blocking(move || metrics.render(catalog.as_deref()))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
        .into_response()
}

/// Middleware: a request waits for one of `max_concurrent_requests` slots, and the whole of it
/// (waiting included) is bounded by `timeout`.
async fn bounded(state: AppState, timeout: Duration, request: Request, next: Next) -> Response {
    let work = async {
        let _slot = match state.slots.clone().acquire_owned().await {
            Ok(slot) => slot,
            Err(_) => {
                return ApiError::unavailable("shutting_down", "the server is shutting down")
                    .into_response()
            }
        };
        next.run(request).await
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(
            "timeout",
            format!(
                "the request took longer than {} s (a write may still commit: read it back to know)",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

async fn bounded_read(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let timeout = state.config.limits.read_timeout;
    bounded(state, timeout, request, next).await
}

async fn bounded_write(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use std::sync::atomic::Ordering;
    let timeout = state.config.limits.write_timeout;
    // Counted down on drop too: a write cut short by its timeout is not running any more.
    struct Running(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    state.writes_running.fetch_add(1, Ordering::SeqCst);
    let _running = Running(state.writes_running.clone());
    bounded(state, timeout, request, next).await
}

async fn bounded_generate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let timeout = state.config.limits.generate_timeout;
    bounded(state, timeout, request, next).await
}

/// The API's router.
pub fn router(state: AppState) -> Router {
    let reads = Router::new()
        .route("/v1/indexes", get(api::list_indexes))
        .route("/v1/indexes/{name}", get(api::get_index))
        .route("/v1/indexes/{name}/documents/{id}", get(api::get_document))
        .route("/v1/indexes/{name}/search", post(search::search))
        .route("/v1/indexes/{name}/search/next", post(search::next_page))
        .route(
            "/v1/indexes/{name}/snapshots/{snapshot}",
            get(snapshots::download_snapshot).delete(snapshots::delete_snapshot),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), bounded_read));
    let writes = Router::new()
        .route(
            "/v1/indexes/{name}",
            axum::routing::put(api::create_index).delete(api::delete_index),
        )
        .route("/v1/indexes/{name}/documents", post(api::upsert_documents))
        .route(
            "/v1/indexes/{name}/documents/{id}",
            axum::routing::delete(api::delete_document),
        )
        .route(
            "/v1/indexes/{name}/documents/delete",
            post(api::delete_documents),
        )
        .route(
            "/v1/indexes/{name}/snapshots",
            post(snapshots::create_snapshot).get(snapshots::list_snapshots),
        )
        .route(
            "/v1/indexes/{name}/snapshots/{snapshot}/restore",
            post(snapshots::restore_snapshot),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), bounded_write));
    let generation = Router::new()
        .route("/v1/indexes/{name}/answer", post(generate::answer))
        .route("/v1/indexes/{name}/recommend", post(generate::recommend))
        .route("/v1/chat/completions", post(generate::chat_completions))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            bounded_generate,
        ));
    Router::new()
        .merge(reads)
        .merge(writes)
        .merge(generation)
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(api::not_found)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            body::read_body,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("the server failed while answering; the index is unchanged")
                    .into_response()
            },
        ))
        .layer(middleware::from_fn(request_log::log))
        .with_state(state)
}

/// How often the server looks for commits that other processes made to the indexes it serves.
/// Reading an index's commit point is one small file read, so 4 times a second is cheap, and it
/// bounds how stale a search can be after `ibex index` wrote to a served index at well under 1 s.
const CATCH_UP_INTERVAL: Duration = Duration::from_millis(250);

/// Runs the server until `shutdown` completes: binds, answers health checks at once, opens the
/// indexes (then `/readyz` turns ready and `on_ready` is called with the bound address), and on
/// shutdown stops accepting and lets the requests in flight finish within
/// `limits.shutdown_grace`. At that deadline writes not yet committed are abandoned (their
/// clients get 503 `write_abandoned`; nothing of them is committed) and the remaining
/// connections are closed, so a client cannot keep the server from stopping.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<(), ServerError> {
    if config.api_keys.is_empty() && !config.addr.ip().is_loopback() && !config.insecure_listen_any
    {
        return Err(ServerError::OpenWithoutKeys(config.addr));
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            hint: if source.kind() == std::io::ErrorKind::AddrInUse {
                " (another process uses that port: pass --addr with another port, or port 0 for any free one)"
            } else {
                ""
            },
            source,
        })?;
    let addr = listener.local_addr()?;
    let grace = config.limits.shutdown_grace;
    let state = AppState::new(config)?;
    let app = router(state.clone());
    // The shutdown signal is shared: axum stops accepting on it, and the grace period counts
    // from it.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    });
    let stopping = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stopped| *stopped).await;
    };
    let graceful = stopping(stopping_rx.clone());
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
    });
    let opening = state.clone();
    tokio::task::spawn_blocking(move || opening.open_catalog())
        .await
        .map_err(|e| ServerError::Io(std::io::Error::other(e.to_string())))??;
    let catching_up = tokio::spawn(catch_up_with_disk(state.clone()));
    on_ready(addr);
    let served = tokio::select! {
        served = &mut server => Some(served),
        _ = async {
            stopping(stopping_rx.clone()).await;
            tokio::time::sleep(grace).await;
        } => None,
    };
    let served = match served {
        Some(served) => served,
        None => {
            // Grace is over: writes still running stop before their commit and answer 503
            // `write_abandoned`; once they have answered, the connections left are closed.
            if let Some(catalog) = state.catalog.get() {
                catalog.abandon_writes();
            }
            eprintln!(
                "ibex: requests still running {} s after the stop signal: abandoning uncommitted writes and closing connections",
                grace.as_secs_f64()
            );
            let abandoned_by = tokio::time::Instant::now() + ABANDON_WAIT;
            while state
                .writes_running
                .load(std::sync::atomic::Ordering::SeqCst)
                > 0
                && tokio::time::Instant::now() < abandoned_by
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            match tokio::time::timeout(ANSWER_FLUSH_WAIT, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    catching_up.abort();
    // Wait for writes still running (an abandoned one stops at its next check, a committing
    // one finishes its commit), then stop the embedding workers.
    let closing = state.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    served.map_err(|e| ServerError::Io(std::io::Error::other(e.to_string())))??;
    Ok(())
}

/// After the grace period, the longest wait for abandoned writes to reach their next check and
/// answer (a check comes every few documents embedded, see `ibex_indexer::SharedIndex`).
const ABANDON_WAIT: Duration = Duration::from_secs(60);

/// Once writes have answered, how long connections get to send those answers before they are
/// closed regardless.
const ANSWER_FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Keeps every served index's searches on its latest commit, including commits other processes
/// make (`ibex index` into a served index): checked every [`CATCH_UP_INTERVAL`].
async fn catch_up_with_disk(state: AppState) {
    let mut reported: std::collections::HashSet<String> = Default::default();
    loop {
        tokio::time::sleep(CATCH_UP_INTERVAL).await;
        let Some(catalog) = state.catalog.get().cloned() else {
            continue;
        };
        let Ok(moved) = tokio::task::spawn_blocking(move || catalog.catch_up_with_disk()).await
        else {
            continue;
        };
        for (name, result) in moved {
            match result {
                Ok(_) => {
                    reported.remove(&name);
                }
                // Said once per failure, not four times a second; searches keep the last good
                // snapshot meanwhile.
                Err(e) => {
                    if reported.insert(name.clone()) {
                        eprintln!("ibex: index {name:?} changed on disk but cannot be reloaded: {e} (still serving its last good commit)");
                    }
                }
            }
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Runs the server on its own runtime until Ctrl-C or SIGTERM (what `ibex serve` calls).
pub fn serve_blocking(
    config: ServerConfig,
    on_ready: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ibex-http")
        .build()?;
    runtime.block_on(serve(config, shutdown_signal(), on_ready))
}
