//! A shared embedding queue: many callers, one model, batches formed across callers.
//!
//! A server receives many small embedding requests at once (one query per search, a few chunks
//! per upsert). Embedding them one call at a time wastes most of a forward pass on overhead, and
//! running them on the async executor's threads would stall every other request. The
//! [`BatchingEmbedder`] puts every call's texts in a queue served by its own worker threads (a
//! bounded pool, outside any executor), which embed whatever is waiting as one batch and hand
//! each caller its own vectors back.
//!
//! Queries go before documents: a large upsert is cut into batches as it is served, so a search
//! arriving meanwhile waits for at most one document batch, not for the whole upsert.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::{Embedder, EmbedderError, Result, TextKind, TokenSpan};

/// Called after each batch with the number of texts it held (for metrics).
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

/// Settings of a [`BatchingEmbedder`].
#[derive(Clone)]
pub struct BatchingOptions {
    /// Most texts embedded in one forward pass.
    pub max_batch: usize,
    /// Worker threads. One is right for a CPU model: the model's matrix code already uses every
    /// core, and two workers would only compete for them.
    pub workers: usize,
    /// Called with each batch's size.
    pub observer: Option<BatchObserver>,
}

impl Default for BatchingOptions {
    fn default() -> Self {
        BatchingOptions {
            max_batch: 32,
            workers: 1,
            observer: None,
        }
    }
}

/// The vectors of one caller's texts, filled in as batches finish.
struct Job {
    vectors: Vec<Option<Vec<f32>>>,
    remaining: usize,
    error: Option<String>,
}

struct JobHandle {
    state: Mutex<Job>,
    done: Condvar,
}

/// A caller's texts not yet handed to a worker.
struct Pending {
    texts: Vec<String>,
    /// Index of the first text not yet taken into a batch.
    next: usize,
    job: Arc<JobHandle>,
}

#[derive(Default)]
struct Queues {
    queries: VecDeque<Pending>,
    documents: VecDeque<Pending>,
    closed: bool,
    /// Whether the last batch taken was of queries: while both queues hold texts, batches
    /// alternate, so queries wait for at most one document batch and documents still progress
    /// under a stream of queries (strict priority starved writes: an upsert behind searches
    /// from two clients waited minutes in the load run of RELIABILITY.md).
    last_was_query: bool,
}

struct Shared {
    model: Arc<dyn Embedder>,
    queues: Mutex<Queues>,
    wake: Condvar,
    /// Texts submitted and not yet taken into a batch.
    queued: AtomicUsize,
    options: BatchingOptions,
}

/// An [`Embedder`] that serves every caller through one queue and a bounded pool of worker
/// threads, batching concurrent callers' texts together. It forwards everything but `embed` to
/// the model it wraps.
pub struct BatchingEmbedder {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl BatchingEmbedder {
    /// Starts the worker threads for `model`.
    pub fn new(model: Arc<dyn Embedder>, options: BatchingOptions) -> Result<Self> {
        let options = BatchingOptions {
            max_batch: options.max_batch.max(1),
            workers: options.workers.max(1),
            ..options
        };
        let shared = Arc::new(Shared {
            model,
            queues: Mutex::new(Queues::default()),
            wake: Condvar::new(),
            queued: AtomicUsize::new(0),
            options,
        });
        let mut workers = Vec::new();
        for n in 0..shared.options.workers {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ibex-embed-{n}"))
                .spawn(move || worker(&shared))
                .map_err(|e| EmbedderError::io("starting an embedding worker thread", e))?;
            workers.push(handle);
        }
        Ok(BatchingEmbedder {
            shared,
            workers: Mutex::new(workers),
        })
    }

    /// Texts waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Stops accepting texts, lets the workers finish what is queued, and joins them.
    pub fn shutdown(&self) {
        if let Ok(mut queues) = self.shared.queues.lock() {
            queues.closed = true;
        }
        self.shared.wake.notify_all();
        let handles = match self.workers.lock() {
            Ok(mut workers) => std::mem::take(&mut *workers),
            Err(_) => return,
        };
        for handle in handles {
            let _ = handle.join();
        }
    }
}

impl Drop for BatchingEmbedder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn poisoned() -> EmbedderError {
    EmbedderError::Batch("the embedding queue was poisoned by a panic in a worker".into())
}

impl Embedder for BatchingEmbedder {
    fn model_id(&self) -> &str {
        self.shared.model.model_id()
    }

    fn dimension(&self) -> usize {
        self.shared.model.dimension()
    }

    fn max_tokens(&self) -> usize {
        self.shared.model.max_tokens()
    }

    fn normalized(&self) -> bool {
        self.shared.model.normalized()
    }

    fn embed(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let job = Arc::new(JobHandle {
            state: Mutex::new(Job {
                vectors: vec![None; texts.len()],
                remaining: texts.len(),
                error: None,
            }),
            done: Condvar::new(),
        });
        {
            let mut queues = self.shared.queues.lock().map_err(|_| poisoned())?;
            if queues.closed {
                return Err(EmbedderError::Batch(
                    "the embedding queue is shut down".into(),
                ));
            }
            let pending = Pending {
                texts: texts.iter().map(|t| t.to_string()).collect(),
                next: 0,
                job: job.clone(),
            };
            match kind {
                TextKind::Query => queues.queries.push_back(pending),
                TextKind::Document => queues.documents.push_back(pending),
            }
            self.shared.queued.fetch_add(texts.len(), Ordering::Relaxed);
        }
        self.shared.wake.notify_one();

        let mut state = job.state.lock().map_err(|_| poisoned())?;
        while state.remaining > 0 && state.error.is_none() {
            state = job.done.wait(state).map_err(|_| poisoned())?;
        }
        if let Some(message) = state.error.take() {
            return Err(EmbedderError::Batch(message));
        }
        Ok(state.vectors.iter_mut().filter_map(Option::take).collect())
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenSpan>> {
        self.shared.model.tokenize(text)
    }
}

/// A slice of one caller's texts inside a batch.
struct Slice {
    job: Arc<JobHandle>,
    /// Position of the slice's first text in the caller's texts.
    offset: usize,
    len: usize,
}

fn worker(shared: &Shared) {
    loop {
        let Some((kind, texts, slices)) = next_batch(shared) else {
            return;
        };
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let result = shared.model.embed(&refs, kind);
        if let Some(observer) = &shared.options.observer {
            observer(texts.len());
        }
        deliver(result, slices);
    }
}

/// Waits for queued texts and takes up to `max_batch` of them: queries first, except right
/// after a batch of queries when documents are waiting. `None` once the queue is closed and
/// empty.
fn next_batch(shared: &Shared) -> Option<(TextKind, Vec<String>, Vec<Slice>)> {
    let mut queues = shared.queues.lock().ok()?;
    loop {
        let queries = !queues.queries.is_empty();
        let documents = !queues.documents.is_empty();
        let kind = if queries && !(documents && queues.last_was_query) {
            TextKind::Query
        } else if documents {
            TextKind::Document
        } else if queues.closed {
            return None;
        } else {
            queues = shared.wake.wait(queues).ok()?;
            continue;
        };
        queues.last_was_query = kind == TextKind::Query;
        let queue = match kind {
            TextKind::Query => &mut queues.queries,
            TextKind::Document => &mut queues.documents,
        };
        let mut texts = Vec::new();
        let mut slices = Vec::new();
        while texts.len() < shared.options.max_batch {
            let Some(front) = queue.front_mut() else {
                break;
            };
            let take = (front.texts.len() - front.next).min(shared.options.max_batch - texts.len());
            let offset = front.next;
            texts.extend(
                front.texts[offset..offset + take]
                    .iter_mut()
                    .map(std::mem::take),
            );
            front.next += take;
            slices.push(Slice {
                job: front.job.clone(),
                offset,
                len: take,
            });
            if front.next == front.texts.len() {
                queue.pop_front();
            }
        }
        shared.queued.fetch_sub(texts.len(), Ordering::Relaxed);
        // Another worker may serve what is left while this one embeds.
        if !queues.queries.is_empty() || !queues.documents.is_empty() {
            shared.wake.notify_one();
        }
        return Some((kind, texts, slices));
    }
}

fn deliver(result: Result<Vec<Vec<f32>>>, slices: Vec<Slice>) {
    let total: usize = slices.iter().map(|s| s.len).sum();
    let mut vectors = match result {
        Ok(vectors) if vectors.len() == total => Some(vectors.into_iter()),
        Ok(vectors) => {
            let message = format!(
                "the model returned {} vectors for {total} texts",
                vectors.len()
            );
            fail(&slices, &message);
            return;
        }
        Err(e) => {
            fail(&slices, &e.to_string());
            None
        }
    };
    let Some(vectors) = vectors.as_mut() else {
        return;
    };
    for slice in slices {
        let Ok(mut state) = slice.job.state.lock() else {
            continue;
        };
        for (i, vector) in vectors.by_ref().take(slice.len).enumerate() {
            state.vectors[slice.offset + i] = Some(vector);
        }
        state.remaining -= slice.len;
        if state.remaining == 0 {
            slice.job.done.notify_all();
        }
    }
}

fn fail(slices: &[Slice], message: &str) {
    for slice in slices {
        if let Ok(mut state) = slice.job.state.lock() {
            state.error.get_or_insert_with(|| message.to_string());
            slice.job.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A deterministic model that records the size of every batch and can be held shut, so a
    /// test can let callers pile up before the first batch runs.
    struct RecordingModel {
        batches: Mutex<Vec<(TextKind, usize)>>,
        /// Texts handed to the model so far (some may be waiting at the gate).
        entered: AtomicUsize,
        gate: (Mutex<bool>, Condvar),
        fail_on: Option<&'static str>,
    }

    impl RecordingModel {
        fn new(fail_on: Option<&'static str>) -> Arc<Self> {
            Arc::new(RecordingModel {
                batches: Mutex::new(Vec::new()),
                entered: AtomicUsize::new(0),
                gate: (Mutex::new(false), Condvar::new()),
                fail_on,
            })
        }
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
    }

    impl Embedder for RecordingModel {
        fn model_id(&self) -> &str {
            "recording"
        }
        fn dimension(&self) -> usize {
            2
        }
        fn max_tokens(&self) -> usize {
            512
        }
        fn normalized(&self) -> bool {
            false
        }
        fn embed(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<f32>>> {
            self.entered.fetch_add(texts.len(), Ordering::SeqCst);
            let mut open = self.gate.0.lock().unwrap();
            while !*open {
                open = self.gate.1.wait(open).unwrap();
            }
            drop(open);
            self.batches.lock().unwrap().push((kind, texts.len()));
            if let Some(bad) = self.fail_on {
                if texts.contains(&bad) {
                    return Err(EmbedderError::Tokenizer(format!("cannot embed {bad:?}")));
                }
            }
            Ok(texts
                .iter()
                .map(|t| vec![t.len() as f32, t.bytes().map(f32::from).sum()])
                .collect())
        }
        fn tokenize(&self, _text: &str) -> Result<Vec<TokenSpan>> {
            Ok(Vec::new())
        }
    }

    /// Waits until `n` texts were submitted: queued, or taken by the worker (which then waits at
    /// the model's gate).
    fn wait_for_submitted(batching: &BatchingEmbedder, model: &RecordingModel, n: usize) {
        while batching.queue_depth() + model.entered.load(Ordering::SeqCst) < n {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn expected(text: &str) -> Vec<f32> {
        vec![text.len() as f32, text.bytes().map(f32::from).sum()]
    }

    #[test]
    fn concurrent_callers_share_batches_and_get_their_own_vectors() {
        let model = RecordingModel::new(None);
        let observed = Arc::new(AtomicUsize::new(0));
        let seen = observed.clone();
        let batching = Arc::new(
            BatchingEmbedder::new(
                model.clone(),
                BatchingOptions {
                    max_batch: 8,
                    workers: 1,
                    observer: Some(Arc::new(move |n| {
                        seen.fetch_add(n, Ordering::Relaxed);
                    })),
                },
            )
            .unwrap(),
        );
        let callers: Vec<_> = (0..12)
            .map(|i| {
                let batching = batching.clone();
                std::thread::spawn(move || {
                    let texts: Vec<String> = (0..=i % 3).map(|j| format!("text {i}-{j}")).collect();
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let vectors = batching.embed(&refs, TextKind::Query).unwrap();
                    for (text, vector) in texts.iter().zip(vectors) {
                        assert_eq!(vector, expected(text));
                    }
                })
            })
            .collect();
        // Let every caller queue up before the model runs its first batch.
        wait_for_submitted(&batching, &model, 24);
        model.open();
        for caller in callers {
            caller.join().unwrap();
        }
        let batches = model.batches.lock().unwrap().clone();
        let total: usize = batches.iter().map(|b| b.1).sum();
        assert_eq!(total, 24);
        assert_eq!(observed.load(Ordering::Relaxed), 24);
        assert!(batches.iter().all(|b| b.1 <= 8));
        assert!(
            batches.len() <= 4,
            "24 queued texts (the first batch possibly taken early) need at most 4 batches of 8, got {batches:?}"
        );
        assert_eq!(batching.queue_depth(), 0);
    }

    #[test]
    fn queries_jump_ahead_of_a_large_document_job() {
        let model = RecordingModel::new(None);
        let batching = Arc::new(
            BatchingEmbedder::new(
                model.clone(),
                BatchingOptions {
                    max_batch: 4,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let documents = {
            let batching = batching.clone();
            std::thread::spawn(move || {
                let texts: Vec<String> = (0..20).map(|i| format!("document {i}")).collect();
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let vectors = batching.embed(&refs, TextKind::Document).unwrap();
                assert_eq!(vectors.len(), 20);
                assert_eq!(vectors[19], expected("document 19"));
            })
        };
        wait_for_submitted(&batching, &model, 20);
        let query = {
            let batching = batching.clone();
            std::thread::spawn(move || batching.embed(&["a query"], TextKind::Query).unwrap())
        };
        wait_for_submitted(&batching, &model, 21);
        model.open();
        assert_eq!(query.join().unwrap(), vec![expected("a query")]);
        documents.join().unwrap();
        let batches = model.batches.lock().unwrap().clone();
        let query_position = batches.iter().position(|b| b.0 == TextKind::Query).unwrap();
        // The worker may have taken the first document batch before the query arrived; never more.
        assert!(query_position <= 1, "query served late: {batches:?}");
        assert_eq!(batches.len(), 6);
    }

    #[test]
    fn documents_progress_while_queries_keep_arriving() {
        let model = RecordingModel::new(None);
        let batching = Arc::new(
            BatchingEmbedder::new(
                model.clone(),
                BatchingOptions {
                    max_batch: 1,
                    workers: 1,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let documents = {
            let batching = batching.clone();
            std::thread::spawn(move || {
                let texts = ["document 0", "document 1", "document 2"];
                batching.embed(&texts, TextKind::Document).unwrap()
            })
        };
        wait_for_submitted(&batching, &model, 3);
        let queries: Vec<_> = (0..5)
            .map(|i| {
                let batching = batching.clone();
                std::thread::spawn(move || {
                    batching
                        .embed(&[format!("query {i}").as_str()], TextKind::Query)
                        .unwrap()
                })
            })
            .collect();
        wait_for_submitted(&batching, &model, 8);
        model.open();
        for query in queries {
            query.join().unwrap();
        }
        assert_eq!(documents.join().unwrap().len(), 3);
        let batches = model.batches.lock().unwrap().clone();
        let kinds: Vec<TextKind> = batches.iter().map(|b| b.0).collect();
        let last_document = kinds
            .iter()
            .rposition(|k| *k == TextKind::Document)
            .unwrap();
        // Alternating: D Q D Q D Q Q Q (the worker took a document first) or Q D Q D Q D Q Q.
        // Strict priority would serve every query first and the last document at position 7.
        assert!(last_document <= 5, "documents starved: {kinds:?}");
        assert!(
            kinds
                .windows(2)
                .all(|w| w != [TextKind::Document, TextKind::Document]),
            "queries waited behind two document batches: {kinds:?}"
        );
    }

    #[test]
    fn a_failing_batch_fails_its_callers_and_not_the_queue() {
        let model = RecordingModel::new(Some("poison"));
        model.open();
        let batching = BatchingEmbedder::new(model.clone(), BatchingOptions::default()).unwrap();
        let error = batching
            .embed(&["fine", "poison"], TextKind::Document)
            .unwrap_err();
        assert!(error.to_string().contains("poison"), "{error}");
        assert_eq!(
            batching.embed(&["fine"], TextKind::Document).unwrap(),
            vec![expected("fine")]
        );
        batching.shutdown();
        assert!(batching.embed(&["late"], TextKind::Query).is_err());
    }
}
