//! The LLM routes: RAG answers, recommendations, and an OpenAI-compatible chat endpoint.
//!
//! Generation runs on blocking threads (the models are synchronous); a streamed answer reaches
//! the client as server-sent events through a channel, token by token. The generator is the one
//! the configuration names (`IBEX_LLM_URL`..., else the embedded SmolLM2), built on first use so
//! that a server that never generates never loads or fetches an LLM.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ibex_compressor::{EmbeddingScorer, IbCompressor, IbParams};
use ibex_generator::{ChatMessage, GenerationRequest, Generator, GeneratorConfig, Role};
use ibex_pipeline::interactions::{CoOccurrence, Interactions};
use ibex_pipeline::recommend::ItemCatalog;
use ibex_pipeline::{AnswerOptions, RecommendOptions};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::api::{blocking, shared_index, ApiJson, ApiPath};
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Most messages of a chat request.
const MAX_MESSAGES: usize = 64;

/// The configured generator, built on first use (fetching the embedded model if needed). A
/// failed build is not remembered, so fixing the configuration or the network needs no restart.
fn generator(state: &AppState) -> Result<Arc<dyn Generator>, ApiError> {
    let mut slot = state
        .generator
        .lock()
        .map_err(|_| ApiError::internal("the generator's lock was poisoned"))?;
    if let Some(generator) = slot.as_ref() {
        return Ok(generator.clone());
    }
    let built = GeneratorConfig::from_env()
        .and_then(|config| config.build())
        .map_err(ApiError::from)?;
    *slot = Some(built.clone());
    Ok(built)
}

/// Sends a blocking generation's output as server-sent events: what `work` passes to its `emit`
/// callback, then its final event (or an `error` event).
fn event_stream(
    work: impl FnOnce(&mut dyn FnMut(Event)) -> Result<Event, ApiError> + Send + 'static,
) -> Response {
    let (sender, receiver) = mpsc::unbounded_channel::<Event>();
    tokio::task::spawn_blocking(move || {
        let mut emit = |event: Event| {
            // A closed channel means the client left; generation then runs to its end unseen.
            let _ = sender.send(event);
        };
        let last = match work(&mut emit) {
            Ok(event) => event,
            Err(e) => Event::default()
                .event("error")
                .data(json!({"error": {"code": e.code, "message": e.message}}).to_string()),
        };
        let _ = sender.send(last);
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|event| (Ok::<Event, Infallible>(event), receiver))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn token_event(text: &str) -> Event {
    Event::default()
        .event("token")
        .data(json!({ "text": text }).to_string())
}

// ---------------------------------------------------------------------------------------------
// RAG answers

/// A question to answer from an index.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The question.
    pub question: String,
    /// Documents retrieved (hybrid). Default 5.
    pub top_k: Option<usize>,
    /// Compress the passages before prompting (the information-bottleneck filter). Default true.
    pub compress: Option<bool>,
    /// Token budget of the compressed context. Default 64.
    pub budget: Option<usize>,
    /// Most tokens of the answer. Default 200; capped by the server's `--max-generated-tokens`.
    pub max_tokens: Option<usize>,
    /// Answer as server-sent events: `token` events (`{"text"}`), then one `answer` event with
    /// the whole result (or an `error` event).
    pub stream: Option<bool>,
}

/// Answer a question from the index: retrieve, compress, generate, check citations.
///
/// The result holds the answer (citations of passages that were not in the context removed and
/// listed in `invalid_citations`), whether it is `supported` by the context (every number and
/// name of the answer appears in a passage or the question; otherwise `unsupported` lists them
/// and `reason` says so), each citation's passage id, document id and offsets, the numbered
/// context that was sent, token counts before and after compression, and timings.
#[utoipa::path(post, path = "/v1/indexes/{name}/answer", tag = "generation",
    params(("name" = String, Path, description = "Index name")),
    request_body = AnswerBody,
    responses(
        (status = 200, description = "The answer, its citations, context, tokens and timings (or an event stream)", body = Object),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 422, description = "An invalid question or option", body = ErrorBody),
        (status = 502, description = "The LLM server failed", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn answer(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<AnswerBody>,
) -> Result<Response, ApiError> {
    let limits = &state.config.limits;
    if body.question.trim().is_empty() {
        return Err(ApiError::invalid(
            "invalid_request",
            "the question is empty",
        ));
    }
    if body.question.chars().count() > limits.max_query_chars {
        return Err(ApiError::invalid(
            "query_too_long",
            format!(
                "the question is longer than {} characters",
                limits.max_query_chars
            ),
        ));
    }
    let top_k = body.top_k.unwrap_or(5);
    if top_k == 0 || top_k > 50 {
        return Err(ApiError::invalid(
            "invalid_request",
            "top_k must be within 1..=50",
        ));
    }
    let options = AnswerOptions {
        top_k,
        compress: body.compress.unwrap_or(true),
        budget: body.budget,
        max_tokens: body
            .max_tokens
            .unwrap_or(200)
            .clamp(1, limits.max_generated_tokens),
        ..AnswerOptions::default()
    };
    let index = shared_index(&state, &name)?;
    let question = body.question;
    let run = move |state: AppState, emit: &mut dyn FnMut(&str)| {
        let generator = generator(&state)?;
        let snapshot = index.snapshot();
        let embedder = index.embedder().clone();
        let compressor =
            IbCompressor::new(EmbeddingScorer::new(embedder.clone()), IbParams::default());
        ibex_pipeline::answer(
            &snapshot,
            embedder.as_ref(),
            &compressor,
            generator.as_ref(),
            &question,
            &options,
            emit,
        )
        .map_err(ApiError::from)
    };
    if body.stream.unwrap_or(false) {
        return Ok(event_stream(move |emit| {
            let answer = run(state, &mut |text| emit(token_event(text)))?;
            let json = serde_json::to_string(&answer)
                .map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))?;
            Ok(Event::default().event("answer").data(json))
        }));
    }
    let answer = blocking(move || run(state, &mut |_| {})).await?;
    Ok(Json(answer).into_response())
}

// ---------------------------------------------------------------------------------------------
// Recommendations

/// A recommendation request over a catalog index (one document per item).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendBody {
    /// The user's items, oldest first (document ids of the index).
    #[serde(default)]
    pub history: Vec<String>,
    /// Items to recommend. Default 10. The list may need k x 48 + 8 generated tokens with reasons
    /// (k x 8 + 8 without), which must fit the server's `--max-generated-tokens` (default 2048:
    /// k <= 42 with reasons).
    pub k: Option<usize>,
    /// What the user asks for, in their words ("something lighter").
    pub query: Option<String>,
    /// Candidates the LLM chooses from (with `llm_weight` above 0). Default 20.
    pub candidates: Option<usize>,
    /// Whether the LLM explains each pick. Default true.
    pub reasons: Option<bool>,
    /// Weight of the LLM's order against the candidate order, at least 0. Default 0: the picks
    /// are the first `k` candidates and the LLM explains them (the embedded model's order made
    /// results worse at every weight measured); raise it for a server whose weight sweep gains.
    pub llm_weight: Option<f32>,
}

/// Recommend catalog items for a history: candidates by embedding similarity (plus co-occurrence
/// when the index holds interaction data), ordered and explained by the LLM, constrained to real
/// candidates (constrained decoding with the embedded model; validation, retry and fallback with
/// an HTTP model). `errors` reports RecAI's error counts of the LLM's output.
#[utoipa::path(post, path = "/v1/indexes/{name}/recommend", tag = "generation",
    params(("name" = String, Path, description = "Catalog index name")),
    request_body = RecommendBody,
    responses(
        (status = 200, description = "Recommended items with reasons, the candidates, error counts", body = Object),
        (status = 404, description = "No such index", body = ErrorBody),
        (status = 422, description = "Unknown history items or invalid options", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn recommend(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<RecommendBody>,
) -> Result<Json<ibex_pipeline::Recommendation>, ApiError> {
    let k = body.k.unwrap_or(10);
    let candidates = body.candidates.unwrap_or(20);
    if k == 0 || k > 100 || candidates == 0 || candidates > 200 {
        return Err(ApiError::invalid(
            "invalid_request",
            "k must be within 1..=100 and candidates within 1..=200",
        ));
    }
    if body.history.len() > 1000 {
        return Err(ApiError::too_large(
            "batch_too_large",
            "a history holds at most 1000 items",
        ));
    }
    let llm_weight = body.llm_weight.unwrap_or(0.0);
    if !(llm_weight.is_finite() && llm_weight >= 0.0) {
        return Err(ApiError::invalid(
            "invalid_request",
            format!("llm_weight must be a number of at least 0, not {llm_weight}"),
        ));
    }
    let options = RecommendOptions {
        k,
        candidates,
        with_reasons: body.reasons.unwrap_or(true),
        llm_weight,
        ..RecommendOptions::default()
    };
    let needed = options.max_generated_tokens();
    let allowed = state.config.limits.max_generated_tokens;
    if needed > allowed {
        return Err(ApiError::invalid(
            "too_many_tokens",
            format!(
                "a list of {k} items{} may need {needed} generated tokens, over this server's limit of {allowed}: ask for fewer items{}",
                if options.with_reasons { " with reasons" } else { "" },
                if options.with_reasons { " or set reasons to false" } else { "" },
            ),
        ));
    }
    let index = shared_index(&state, &name)?;
    let result = blocking(move || {
        let generator = generator(&state)?;
        let snapshot = index.snapshot();
        let catalog = ItemCatalog::from_index(&snapshot).map_err(ApiError::from)?;
        let co = co_occurrence(&state, &snapshot)?;
        ibex_pipeline::recommend(
            &catalog,
            co.as_deref(),
            Some(index.embedder().as_ref()),
            generator.as_ref(),
            &body.history,
            body.query.as_deref(),
            &options,
        )
        .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(result))
}

/// The co-occurrence of the interactions installed in the commit `index` shows, cached by file:
/// each commit that installs interactions writes a file of its own name, so a cached entry is
/// never stale (the modification time also covers indexes from before that, which kept theirs
/// in `interactions.tsv`).
fn co_occurrence(
    state: &AppState,
    index: &ibex_indexer::Index,
) -> Result<Option<Arc<CoOccurrence>>, ApiError> {
    let path = index.interactions_path();
    let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
        if index.manifest().interactions.is_some() {
            // Named by the commit but gone: another process committed and collected it; this
            // reports the missing file with its generation.
            Interactions::load_for_index(index).map_err(ApiError::from)?;
        }
        return Ok(None);
    };
    {
        let cache = state
            .co_occurrence
            .lock()
            .map_err(|_| ApiError::internal("the co-occurrence cache's lock was poisoned"))?;
        if let Some((when, co)) = cache.get(&path) {
            if *when == modified {
                return Ok(Some(co.clone()));
            }
        }
    }
    let Some(interactions) = Interactions::load_for_index(index).map_err(ApiError::from)? else {
        return Ok(None);
    };
    let histories = interactions.histories();
    let co = Arc::new(CoOccurrence::build(histories.values().map(Vec::as_slice)));
    let mut cache = state
        .co_occurrence
        .lock()
        .map_err(|_| ApiError::internal("the co-occurrence cache's lock was poisoned"))?;
    // One entry per index: older files of the same index are dropped with the new one's insert.
    cache.retain(|cached, _| cached.parent() != path.parent());
    cache.insert(path, (modified, co.clone()));
    Ok(Some(co))
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible chat completions

/// One message of a chat request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessageBody {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message's text.
    pub content: String,
}

/// An OpenAI-format chat completion request. Fields ibex does not use (`top_p`, `stop`...) are
/// accepted and ignored, so existing clients work unchanged.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionBody {
    /// Informational: the server answers with its configured model.
    pub model: Option<String>,
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessageBody>,
    /// Most tokens to generate (default 256; capped by the server's `--max-generated-tokens`).
    pub max_tokens: Option<usize>,
    /// OpenAI's newer name for `max_tokens` (wins when both are given).
    pub max_completion_tokens: Option<usize>,
    /// 0 (default) decodes greedily.
    pub temperature: Option<f64>,
    /// Seed of sampled decoding.
    pub seed: Option<u64>,
    /// Whether to answer with server-sent events (OpenAI's chunk format).
    pub stream: Option<bool>,
    /// Completions per request: only 1 is supported.
    pub n: Option<usize>,
}

/// OpenAI-compatible chat completions from the server's LLM (the embedded SmolLM2 by default),
/// so RAG clients written for OpenAI's API can use ibex directly. Streaming (`stream: true`)
/// sends `chat.completion.chunk` events and `data: [DONE]`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "generation",
    request_body = ChatCompletionBody,
    responses(
        (status = 200, description = "A chat.completion object (or an event stream of chunks)", body = Object),
        (status = 422, description = "Invalid messages or options", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn chat_completions(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ChatCompletionBody>,
) -> Result<Response, ApiError> {
    if body.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "invalid_request",
            "only n = 1 is supported",
        ));
    }
    if body.messages.is_empty() || body.messages.len() > MAX_MESSAGES {
        return Err(ApiError::invalid(
            "invalid_request",
            format!("messages must hold 1 to {MAX_MESSAGES} messages"),
        ));
    }
    let messages = body
        .messages
        .into_iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::invalid(
                        "invalid_request",
                        format!("unknown role `{other}`: use system, user or assistant"),
                    ))
                }
            };
            Ok(ChatMessage {
                role,
                content: m.content,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut request = GenerationRequest::new(messages);
    request.max_tokens = body
        .max_completion_tokens
        .or(body.max_tokens)
        .unwrap_or(256)
        .clamp(1, state.config.limits.max_generated_tokens);
    request.temperature = body.temperature.unwrap_or(0.0);
    request.seed = body.seed.unwrap_or(0);
    request.validate().map_err(ApiError::from)?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!("chatcmpl-ibex-{created}-{:x}", next_completion_number());
    if body.stream.unwrap_or(false) {
        return Ok(event_stream(move |emit| {
            let generator = generator(&state)?;
            let model = generator.model().to_string();
            let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                Event::default().data(
                    json!({
                        "id": id, "object": "chat.completion.chunk", "created": created,
                        "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    })
                    .to_string(),
                )
            };
            emit(chunk(json!({"role": "assistant", "content": ""}), None));
            let completion = generator
                .generate(&request, &mut |text| {
                    emit(chunk(json!({ "content": text }), None))
                })
                .map_err(ApiError::from)?;
            let finish = finish_name(completion.finish_reason);
            emit(chunk(json!({}), Some(finish)));
            emit(
                Event::default().data(
                    json!({
                        "id": id, "object": "chat.completion.chunk", "created": created,
                        "model": model, "choices": [],
                        "usage": usage(&completion),
                    })
                    .to_string(),
                ),
            );
            Ok(Event::default().data("[DONE]"))
        }));
    }
    let (model, completion) = blocking(move || {
        let generator = generator(&state)?;
        let completion = generator
            .generate(&request, &mut |_| {})
            .map_err(ApiError::from)?;
        Ok((generator.model().to_string(), completion))
    })
    .await?;
    Ok(Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": finish_name(completion.finish_reason),
        }],
        "usage": usage(&completion),
    }))
    .into_response())
}

fn finish_name(reason: ibex_generator::FinishReason) -> &'static str {
    match reason {
        ibex_generator::FinishReason::Stop => "stop",
        ibex_generator::FinishReason::Length => "length",
    }
}

fn usage(completion: &ibex_generator::Completion) -> serde_json::Value {
    json!({
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    })
}

/// A per-process counter, appended to the time so completion ids differ within a second.
fn next_completion_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}
