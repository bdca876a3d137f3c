//! Prometheus metrics: requests and latency per route and status, documents and bytes per
//! index, the embedding queue's depth and its batch sizes.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ibex_embedder::BatchingEmbedder;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::AppState;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGauge,
    index_documents: IntGaugeVec,
    index_chunks: IntGaugeVec,
    index_bytes: IntGaugeVec,
    queue_depth: IntGauge,
    pub(crate) batch_size: Histogram,
    /// The embedding queues, read at scrape time.
    pub(crate) embedders: Mutex<Vec<Arc<BatchingEmbedder>>>,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("ibex_http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ibex_http_request_duration_seconds",
                "Time from receiving a request to answering it",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["method", "route", "status"],
        )?;
        let in_flight = IntGauge::new("ibex_http_requests_in_flight", "Requests being served")?;
        let index_documents = IntGaugeVec::new(
            Opts::new(
                "ibex_index_documents",
                "Documents in the index's last commit",
            ),
            &["index"],
        )?;
        let index_chunks = IntGaugeVec::new(
            Opts::new("ibex_index_chunks", "Chunks in the index's last commit"),
            &["index"],
        )?;
        let index_bytes = IntGaugeVec::new(
            Opts::new(
                "ibex_index_bytes",
                "Bytes the index's directory takes on disk",
            ),
            &["index"],
        )?;
        let queue_depth = IntGauge::new(
            "ibex_embedder_queue_depth",
            "Texts waiting for the embedding workers",
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "ibex_embedder_batch_size",
                "Texts embedded per forward pass (concurrent requests share batches)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(index_documents.clone()))?;
        registry.register(Box::new(index_chunks.clone()))?;
        registry.register(Box::new(index_bytes.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            in_flight,
            index_documents,
            index_chunks,
            index_bytes,
            queue_depth,
            batch_size,
            embedders: Mutex::new(Vec::new()),
        })
    }

    /// The Prometheus text exposition of every metric, with the per-index gauges and the queue
    /// depth read now.
    pub fn render(&self, catalog: Option<&ibex_indexer::Catalog>) -> String {
        self.index_documents.reset();
        self.index_chunks.reset();
        self.index_bytes.reset();
        if let Some(catalog) = catalog {
            for index in catalog.list() {
                let info = index.info();
                let labels = [info.name.as_str()];
                self.index_documents
                    .with_label_values(&labels)
                    .set(info.documents as i64);
                self.index_chunks
                    .with_label_values(&labels)
                    .set(info.chunks as i64);
                self.index_bytes
                    .with_label_values(&labels)
                    .set(info.bytes_on_disk as i64);
            }
        }
        let depth: usize = match self.embedders.lock() {
            Ok(embedders) => embedders.iter().map(|e| e.queue_depth()).sum(),
            Err(_) => 0,
        };
        self.queue_depth.set(depth as i64);
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics; an empty answer beats a panic.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Middleware: counts each request and times it, labelled by its route template (never by the
/// raw path, which would make one series per document id). The template also goes into the
/// response's extensions for the request log, which runs outside routing.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let metrics = state.metrics.clone();
    metrics.in_flight.inc();
    // Decremented on drop too, so a request cut short by the timeout is not counted forever.
    struct InFlight(IntGauge);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    let guard = InFlight(metrics.in_flight.clone());
    let mut response = next.run(request).await;
    drop(guard);
    response
        .extensions_mut()
        .insert(crate::request_log::RouteTemplate(route.clone()));
    let status = response.status().as_u16().to_string();
    let labels = [method.as_str(), route.as_str(), status.as_str()];
    metrics.requests.with_label_values(&labels).inc();
    metrics
        .latency
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
