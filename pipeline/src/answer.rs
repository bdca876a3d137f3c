//! RAG answers: retrieve, compress, prompt, generate, check citations.

use std::time::Instant;

use std::collections::{HashMap, HashSet};

use ibex_compressor::{Compression, Compressor, Passage};
use ibex_embedder::Embedder;
use ibex_generator::prompt::{
    check_citations, rag_messages, AnswerStyle, CitationCheck, ContextPassage,
};
use ibex_generator::{Completion, FinishReason, GenerationRequest, Generator};
use ibex_indexer::{slice_chars, Index};
use ibex_search::{Mode, SearchRequest};
use serde::Serialize;

use crate::support::{check_support, Support};
use crate::{elapsed_ms, PipelineError, Result};

/// Longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 4_000;

/// How to answer.
#[derive(Debug, Clone)]
pub struct AnswerOptions {
    /// Documents to retrieve (hybrid search).
    pub top_k: usize,
    /// Passages per document.
    pub passages_per_document: usize,
    /// Whether to compress the passages (the information-bottleneck filter) before prompting.
    pub compress: bool,
    /// Token budget of the compressed context (`None`: the compressor's default).
    pub budget: Option<usize>,
    /// How the answer is asked for (a sentence with citations, or a short phrase).
    pub style: AnswerStyle,
    /// Upper bound on the answer's tokens.
    pub max_tokens: usize,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions {
            top_k: 5,
            passages_per_document: 2,
            compress: true,
            budget: None,
            style: AnswerStyle::Sentences,
            max_tokens: 200,
        }
    }
}

/// One numbered passage of the context that was sent to the LLM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextEntry {
    /// Its number in the prompt (`[1]`...).
    pub number: usize,
    /// `doc_id:start-end`, stable across calls while the document is unchanged.
    pub passage_id: String,
    /// The document the passage comes from.
    pub doc_id: String,
    /// Its document's title.
    pub title: String,
    /// Character offsets into the document of the first and last kept character.
    pub start: usize,
    /// One past the last kept character, into the document.
    pub end: usize,
    /// The text sent (the kept sentences, joined by spaces).
    pub text: String,
}

/// A citation the answer made, resolved to its passage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    /// The cited number, as in the answer (`[2]`).
    pub number: usize,
    /// The passage's id (`doc_id:start-end`).
    pub passage_id: String,
    /// The cited document.
    pub doc_id: String,
    /// Its title.
    pub title: String,
    /// Character offset of the passage in the document.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
    /// True when the model cited nothing and the citation was attributed by word overlap between
    /// the answer and the passage (small models often omit citation markers).
    pub inferred: bool,
}

/// Token counts of the context.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ContextTokens {
    /// Tokens of the retrieved passages (the compressor's count).
    pub before_compression: usize,
    /// Tokens of what was kept (equal to `before_compression` without compression).
    pub after_compression: usize,
    /// The whole prompt, as the LLM counted it (0 when an HTTP server does not report usage).
    pub prompt: usize,
    /// Tokens of the answer.
    pub completion: usize,
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AnswerTimings {
    /// Retrieval.
    pub retrieve_ms: f64,
    /// Compression (0 without it).
    pub compress_ms: f64,
    /// Generation.
    pub generate_ms: f64,
    /// The whole answer.
    pub total_ms: f64,
}

/// An answer with its checked citations and the context behind it.
#[derive(Debug, Clone, Serialize)]
pub struct RagAnswer {
    /// The question asked.
    pub question: String,
    /// The answer, with citations of passages that were not in the context removed.
    pub answer: String,
    /// The passages the answer cites, resolved and checked.
    pub citations: Vec<Citation>,
    /// Citation numbers the model made up (not in the context): removed from `answer`.
    pub invalid_citations: Vec<usize>,
    /// Whether the answer's numbers and names all appear in the context (or the question), the
    /// ones that do not, and why that matters ([`crate::support`]): `supported: false` marks an
    /// answer the passages do not back, which must not be shown like a grounded one.
    #[serde(flatten)]
    pub support: Support,
    /// The numbered passages that were sent.
    pub context: Vec<ContextEntry>,
    /// Token counts of the context and the answer.
    pub tokens: ContextTokens,
    /// Where the time went.
    pub timings: AnswerTimings,
    /// The LLM that answered.
    pub model: String,
    /// Whether the context was compressed.
    pub compressed: bool,
}

/// Retrieves passages for `question`, compresses them, and asks `generator` for an answer with
/// citations; `on_text` receives the raw answer as it is generated.
pub fn answer(
    index: &Index,
    embedder: &dyn Embedder,
    compressor: &dyn Compressor,
    generator: &dyn Generator,
    question: &str,
    options: &AnswerOptions,
    on_text: &mut dyn FnMut(&str),
) -> Result<RagAnswer> {
    let question = question.trim();
    if question.is_empty() {
        return Err(PipelineError::InvalidRequest(
            "the question is empty".into(),
        ));
    }
    if question.chars().count() > MAX_QUESTION_CHARS {
        return Err(PipelineError::InvalidRequest(format!(
            "the question is longer than {MAX_QUESTION_CHARS} characters"
        )));
    }
    let total = Instant::now();
    let (passages, titles) = retrieve_passages(
        index,
        embedder,
        question,
        options.top_k,
        options.passages_per_document,
    )?;
    let retrieve_ms = elapsed_ms(total);
    let compress_start = Instant::now();
    let compression = compressor.compress(question, &passages, options.budget)?;
    let compress_ms = elapsed_ms(compress_start);
    let context = build_context(&passages, &titles, options.compress.then_some(&compression));
    let tokens_after = if options.compress {
        compression.kept_tokens
    } else {
        compression.total_tokens
    };

    let generate_start = Instant::now();
    let (completion, checked) = generate_answer(
        generator,
        question,
        &context,
        options.style,
        options.max_tokens,
        on_text,
    )?;
    let generate_ms = elapsed_ms(generate_start);
    let (numbers, inferred) = if checked.cited.is_empty() {
        (attribute_by_overlap(&checked.text, &context), true)
    } else {
        (checked.cited.clone(), false)
    };
    let citations = numbers
        .iter()
        .filter_map(|&n| context.get(n - 1))
        .map(|c| Citation {
            number: c.number,
            passage_id: c.passage_id.clone(),
            doc_id: c.doc_id.clone(),
            title: c.title.clone(),
            start: c.start,
            end: c.end,
            inferred,
        })
        .collect();
    let support = check_support(
        &checked.text,
        completion.finish_reason == FinishReason::Length,
        question,
        context
            .iter()
            .flat_map(|c| [c.title.as_str(), c.text.as_str()]),
    );
    Ok(RagAnswer {
        question: question.to_string(),
        support,
        answer: checked.text,
        citations,
        invalid_citations: checked.invalid,
        context,
        tokens: ContextTokens {
            before_compression: compression.total_tokens,
            after_compression: tokens_after,
            prompt: completion.prompt_tokens,
            completion: completion.completion_tokens,
        },
        timings: AnswerTimings {
            retrieve_ms,
            compress_ms,
            generate_ms,
            total_ms: elapsed_ms(total),
        },
        model: generator.model().to_string(),
        compressed: options.compress,
    })
}

/// Hybrid retrieval of the `top_k` documents for `question`, as compressor input: their best
/// `passages_per_document` passages (with offsets into their documents), and their titles by id.
pub fn retrieve_passages(
    index: &Index,
    embedder: &dyn Embedder,
    question: &str,
    top_k: usize,
    passages_per_document: usize,
) -> Result<(Vec<Passage>, HashMap<String, String>)> {
    let mut request = SearchRequest::new(question);
    request.mode = Mode::Hybrid;
    request.top_k = top_k;
    request.passages = passages_per_document.max(1);
    let results = ibex_search::search(index, Some(embedder), &request)?;
    let mut titles = HashMap::new();
    let passages = results
        .hits
        .into_iter()
        .flat_map(|hit| {
            titles.insert(hit.id.clone(), hit.title.clone());
            let id = hit.id;
            hit.passages.into_iter().map(move |p| Passage {
                doc_id: id.clone(),
                text: p.text,
                offset: p.start,
            })
        })
        .collect();
    Ok((passages, titles))
}

/// The context entry an uncited answer draws on: the one holding the largest share of the
/// answer's content words, if that share is at least half. Empty when no passage does.
pub fn attribute_by_overlap(answer: &str, context: &[ContextEntry]) -> Vec<usize> {
    let words = |text: &str| -> HashSet<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() > 2)
            .map(str::to_lowercase)
            .collect()
    };
    let answer_words = words(answer);
    if answer_words.is_empty() {
        return Vec::new();
    }
    context
        .iter()
        .map(|c| {
            let passage = words(&format!("{} {}", c.title, c.text));
            let shared = answer_words.intersection(&passage).count();
            (shared as f64 / answer_words.len() as f64, c.number)
        })
        .filter(|(share, _)| *share >= 0.5)
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, number)| vec![number])
        .unwrap_or_default()
}

/// Prompts `generator` with `context` (numbered as given) and checks the answer's citations.
pub fn generate_answer(
    generator: &dyn Generator,
    question: &str,
    context: &[ContextEntry],
    style: AnswerStyle,
    max_tokens: usize,
    on_text: &mut dyn FnMut(&str),
) -> Result<(Completion, CitationCheck)> {
    let shown: Vec<ContextPassage> = context
        .iter()
        .map(|c| ContextPassage {
            title: c.title.clone(),
            text: c.text.clone(),
        })
        .collect();
    let mut generation = GenerationRequest::new(rag_messages(question, &shown, style));
    generation.max_tokens = max_tokens;
    let completion = generator.generate(&generation, on_text)?;
    let checked = check_citations(&completion.text, context.len());
    Ok((completion, checked))
}

/// The numbered context of `passages`: as they are, or only what `compression` kept of them
/// (one entry per passage that kept a sentence). `titles` maps document ids to titles.
pub fn build_context(
    passages: &[Passage],
    titles: &HashMap<String, String>,
    compression: Option<&Compression>,
) -> Vec<ContextEntry> {
    match compression {
        Some(compression) => kept_context(passages, compression, titles),
        None => whole_context(passages, titles),
    }
}

fn entry(
    number: usize,
    doc_id: &str,
    title: &str,
    start: usize,
    end: usize,
    text: String,
) -> ContextEntry {
    ContextEntry {
        number,
        passage_id: format!("{doc_id}:{start}-{end}"),
        doc_id: doc_id.to_string(),
        title: title.to_string(),
        start,
        end,
        text,
    }
}

/// The retrieved passages as they are, numbered in retrieval order.
fn whole_context(passages: &[Passage], titles: &HashMap<String, String>) -> Vec<ContextEntry> {
    passages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let title = titles
                .get(&p.doc_id)
                .map(String::as_str)
                .unwrap_or_default();
            let end = p.offset + p.text.chars().count();
            entry(i + 1, &p.doc_id, title, p.offset, end, p.text.clone())
        })
        .collect()
}

/// One numbered entry per passage that kept at least one sentence: its kept sentences, in order.
fn kept_context(
    passages: &[Passage],
    compression: &Compression,
    titles: &HashMap<String, String>,
) -> Vec<ContextEntry> {
    let mut context = Vec::new();
    // Passages of one document may overlap; a kept sentence is shown once.
    let mut shown: HashSet<(&str, usize)> = HashSet::new();
    for passage in passages {
        let length = passage.text.chars().count();
        let inside =
            |start: usize, end: usize| start >= passage.offset && end <= passage.offset + length;
        let spans: Vec<_> = compression
            .spans
            .iter()
            .filter(|s| s.doc_id == passage.doc_id && inside(s.start, s.end))
            .filter(|s| shown.insert((s.doc_id.as_str(), s.start)))
            .collect();
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
            continue;
        };
        let text = spans
            .iter()
            .map(|s| {
                slice_chars(
                    &passage.text,
                    s.start - passage.offset,
                    s.end - passage.offset,
                )
                .trim()
            })
            .collect::<Vec<_>>()
            .join(" ");
        let title = titles
            .get(&passage.doc_id)
            .map(String::as_str)
            .unwrap_or_default();
        context.push(entry(
            context.len() + 1,
            &passage.doc_id,
            title,
            first.start,
            last.end,
            text,
        ));
    }
    context
}
