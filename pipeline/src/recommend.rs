//! Generative recommendation over a catalog index, constrained to real items.
//!
//! In the style of RecAI: the catalog's items are the documents of an index, a user is their
//! history of item ids. Candidates come from the items' embeddings (similar to the history, and
//! to the user's wish when given) fused with co-occurrence when interaction data is available;
//! the LLM then orders the candidates and explains each pick. The embedded model decodes under a
//! grammar that admits only distinct candidate ids; an HTTP model's free text is validated, retried
//! with the errors named, and replaced by the candidate ranking when it stays invalid.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use ibex_embedder::vector::dot;
use ibex_embedder::{Embedder, TextKind};
use ibex_generator::grammar::{parse_item_list, ItemListGrammar, ParsedItemList};
use ibex_generator::prompt::{recommendation_messages, PromptItem};
use ibex_generator::{ChatMessage, GenerationRequest, Generator};
use ibex_indexer::Index;
use ibex_search::fusion::reciprocal_rank_scores;
use serde::Serialize;

use crate::interactions::CoOccurrence;
use crate::{elapsed_ms, PipelineError, Result};

/// Reciprocal-rank constant of the candidate fusion (the usual 60).
const RRF_K: f32 = 60.0;
/// Characters of an item's text shown to the LLM after its title.
const DESCRIPTION_CHARS: usize = 80;

/// How to recommend.
#[derive(Debug, Clone)]
pub struct RecommendOptions {
    /// Items to recommend.
    pub k: usize,
    /// Candidates the LLM chooses from.
    pub candidates: usize,
    /// Whether the LLM explains each pick (one sentence); without, it only orders.
    pub with_reasons: bool,
    /// The most recent history items shown in the prompt.
    pub history_in_prompt: usize,
    /// Retries of an HTTP model whose list was invalid, before falling back to the candidates.
    pub retries: usize,
    /// Weight of the LLM's order against the candidate order in the final ranking
    /// (reciprocal-rank fusion; 0 = candidate order only, large = the LLM's order). At 0 (the
    /// default) the LLM is shown only the final `k` candidates and explains them; above 0 it
    /// chooses among all `candidates`. The default is 0 because no weight of the embedded 135M
    /// model's order measured better than the candidate order on MovieLens (EVALUATION.md: a
    /// default must not make results worse); for an LLM server, raise it only after
    /// `ibex eval-recommend` shows its weight sweep gaining.
    pub llm_weight: f32,
    /// Weight of embedding similarity against co-occurrence in the candidate fusion (when
    /// interaction data is available; without it embeddings alone rank the candidates).
    pub embedding_weight: f32,
    /// Half-life, in items, of a history item's weight in co-occurrence scores (`None`: all
    /// items weigh the same).
    pub recency_half_life: Option<f32>,
}

impl RecommendOptions {
    /// The most tokens the LLM may generate for a list of `k` items, so a server can refuse a
    /// request beyond its limit before any work.
    pub fn max_generated_tokens(&self) -> usize {
        self.generated_tokens_for(self.k)
    }

    /// Each line is an id, and with reasons a sentence: the output is bounded accordingly.
    fn generated_tokens_for(&self, listed: usize) -> usize {
        listed * if self.with_reasons { 48 } else { 8 } + 8
    }
}

impl Default for RecommendOptions {
    fn default() -> Self {
        RecommendOptions {
            k: 10,
            candidates: 20,
            with_reasons: true,
            history_in_prompt: 5,
            retries: 2,
            llm_weight: 0.0,
            embedding_weight: 0.25,
            recency_half_life: Some(1.0),
        }
    }
}

/// A catalog item with its embedding: what recommendation needs from an index.
#[derive(Debug, Clone)]
pub struct CatalogItem {
    /// The item's id (its document id).
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its text.
    pub text: String,
    /// Mean of its chunk vectors, normalized.
    pub vector: Vec<f32>,
}

/// The items of a catalog index, loaded once.
#[derive(Debug, Clone)]
pub struct ItemCatalog {
    /// Every item, in index order.
    pub items: Vec<CatalogItem>,
    index: HashMap<String, usize>,
}

impl ItemCatalog {
    /// Loads every live document of `index` as an item.
    pub fn from_index(index: &Index) -> Result<Self> {
        let mut items = Vec::with_capacity(index.num_documents());
        for doc in index.live_docs().iter() {
            let Some(stored) = index.get_document(&doc.id)? else {
                continue;
            };
            let mut vector = vec![0f32; index.model().dimension];
            for key in doc.chunk_base..doc.chunk_base + doc.chunk_count as u64 {
                if let Some(v) = index.chunk_vector(key)? {
                    vector.iter_mut().zip(v.iter()).for_each(|(a, b)| *a += b);
                }
            }
            normalize(&mut vector);
            items.push(CatalogItem {
                id: stored.id,
                title: stored.title,
                text: stored.text,
                vector,
            });
        }
        Ok(Self::from_items(items))
    }

    /// A catalog of `items` an application holds itself (vectors normalized, all of one
    /// dimension); a later item with the same id shadows an earlier one in lookups.
    pub fn from_items(items: Vec<CatalogItem>) -> Self {
        let index = items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.id.clone(), i))
            .collect();
        ItemCatalog { items, index }
    }

    /// The item with id `id`.
    pub fn get(&self, id: &str) -> Option<&CatalogItem> {
        self.index.get(id).map(|&i| &self.items[i])
    }

    /// How an item is described to the LLM: its title and the start of its text.
    pub fn describe(&self, item: &CatalogItem) -> String {
        let text: String = item.text.chars().take(DESCRIPTION_CHARS).collect();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match (item.title.trim().is_empty(), text.is_empty()) {
            (true, _) => text,
            (false, true) => item.title.trim().to_string(),
            (false, false) => format!("{} | {text}", item.title.trim()),
        }
    }

    /// Items ranked by embedding similarity to `profile`, excluding `exclude`.
    pub fn rank_by_vector(&self, profile: &[f32], exclude: &HashSet<&str>) -> Vec<(usize, f32)> {
        let mut scored: Vec<(usize, f32)> = self
            .items
            .iter()
            .enumerate()
            .filter(|(_, item)| !exclude.contains(item.id.as_str()))
            .map(|(i, item)| (i, dot(&item.vector, profile)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }

    /// The normalized mean vector of `history`'s items (unknown ids are skipped).
    pub fn profile(&self, history: &[String]) -> Option<Vec<f32>> {
        let vectors: Vec<&[f32]> = history
            .iter()
            .filter_map(|id| self.get(id))
            .map(|item| item.vector.as_slice())
            .collect();
        let first = vectors.first()?;
        let mut profile = vec![0f32; first.len()];
        for v in &vectors {
            profile.iter_mut().zip(v.iter()).for_each(|(a, b)| *a += b);
        }
        normalize(&mut profile);
        Some(profile)
    }
}

fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// A candidate with its rank among the candidates.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The item's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Fused candidate score (reciprocal ranks).
    pub score: f32,
}

/// A recommended item.
#[derive(Debug, Clone, Serialize)]
pub struct RecommendedItem {
    /// The item's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The LLM's one-sentence reason (absent for items the LLM did not pick).
    pub reason: Option<String>,
    /// Its 1-based rank among the candidates.
    pub candidate_rank: usize,
    /// Its 1-based rank in the LLM's list, if the LLM picked it.
    pub llm_rank: Option<usize>,
}

/// RecAI's error counts of the LLM's raw output, and what was done about them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct OutputErrors {
    /// Items named that were not among the candidates.
    pub candidate_errors: usize,
    /// Items named more than once.
    pub duplicates: usize,
    /// Items of the user's history named again.
    pub history_repeats: usize,
    /// Non-empty lines with no id (1 for an output with no list at all).
    pub unparseable: usize,
    /// Extra attempts made after an invalid list.
    pub retries: usize,
    /// Whether the final list came from the candidate ranking because the LLM's stayed invalid.
    pub fell_back: bool,
}

/// The result of a recommendation.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// The recommended items, best first.
    pub items: Vec<RecommendedItem>,
    /// The candidates the LLM chose from, best first.
    pub candidates: Vec<Candidate>,
    /// The LLM's own valid list, in its order (before fusion with the candidate ranking).
    pub llm_order: Vec<String>,
    /// The errors of the LLM's first output (all zero under constrained decoding).
    pub errors: OutputErrors,
    /// Whether the LLM decoded under the candidate grammar.
    pub constrained: bool,
    /// The LLM that ordered the candidates.
    pub model: String,
    /// Milliseconds spent finding candidates.
    pub candidates_ms: f64,
    /// Milliseconds spent in the LLM.
    pub generate_ms: f64,
}

/// Candidates for `history` (and the optional wish): reciprocal-rank fusion of embedding
/// similarity and co-occurrence, minus the history, best first.
pub fn candidates(
    catalog: &ItemCatalog,
    co_occurrence: Option<&CoOccurrence>,
    history: &[String],
    wish_vector: Option<&[f32]>,
    count: usize,
    embedding_weight: f32,
    recency_half_life: Option<f32>,
) -> Vec<Candidate> {
    let exclude: HashSet<&str> = history.iter().map(String::as_str).collect();
    // Each source's ranking, cut at ten times the candidates asked for, with its weight.
    let mut sources: Vec<(Vec<(usize, f32)>, f32)> = Vec::new();
    let embedding_weight = if co_occurrence.is_some() {
        embedding_weight
    } else {
        1.0
    };
    if let Some(profile) = catalog.profile(history) {
        sources.push((catalog.rank_by_vector(&profile, &exclude), embedding_weight));
    }
    if let Some(wish) = wish_vector {
        sources.push((catalog.rank_by_vector(wish, &exclude), 1.0));
    }
    if let Some(co) = co_occurrence {
        let scores = match recency_half_life {
            Some(half_life) => co.recency_scores(history, half_life),
            None => co.scores(history),
        };
        let mut scored: Vec<(usize, f32)> = scores
            .into_iter()
            .filter(|(id, _)| !exclude.contains(id))
            .filter_map(|(id, s)| catalog.index.get(id).map(|&i| (i, s)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        sources.push((scored, 1.0));
    }
    let depth = count.max(1) * 10;
    let fused = reciprocal_rank_scores(
        sources.iter().map(|(ranking, weight)| {
            let items = ranking
                .iter()
                .take(depth)
                .enumerate()
                .map(|(i, &(item, _))| (item, i + 1));
            (items, *weight)
        }),
        RRF_K,
    );
    let mut ranked: Vec<(usize, f32)> = fused.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .take(count)
        .map(|(i, score)| Candidate {
            id: catalog.items[i].id.clone(),
            title: catalog.items[i].title.clone(),
            score,
        })
        .collect()
}

/// Recommends `options.k` items of `catalog` for a user with `history` (oldest first).
#[allow(clippy::too_many_arguments)]
pub fn recommend(
    catalog: &ItemCatalog,
    co_occurrence: Option<&CoOccurrence>,
    embedder: Option<&dyn Embedder>,
    generator: &dyn Generator,
    history: &[String],
    wish: Option<&str>,
    options: &RecommendOptions,
) -> Result<Recommendation> {
    if options.k == 0 || options.candidates == 0 {
        return Err(PipelineError::InvalidRequest(
            "k and candidates must be at least 1".into(),
        ));
    }
    let unknown: Vec<&str> = history
        .iter()
        .filter(|id| catalog.get(id).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(PipelineError::InvalidRequest(format!(
            "the history names items that are not in the catalog: {}",
            unknown.join(", ")
        )));
    }
    let wish = wish.map(str::trim).filter(|w| !w.is_empty());
    if history.is_empty() && wish.is_none() {
        return Err(PipelineError::InvalidRequest(
            "give a history of item ids, a query, or both".into(),
        ));
    }
    let start = Instant::now();
    let wish_vector = match (wish, embedder) {
        (Some(w), Some(embedder)) => embedder.embed(&[w], TextKind::Query)?.pop(),
        _ => None,
    };
    let count = options.candidates.max(options.k);
    let candidates = candidates(
        catalog,
        co_occurrence,
        history,
        wish_vector.as_deref(),
        count,
        options.embedding_weight,
        options.recency_half_life,
    );
    let candidates_ms = elapsed_ms(start);

    let candidate_ids: Vec<String> = candidates.iter().map(|c| c.id.clone()).collect();
    let describe = |id: &String| PromptItem {
        id: id.clone(),
        description: catalog
            .get(id)
            .map(|item| catalog.describe(item))
            .unwrap_or_default(),
    };
    let recent = &history[history.len().saturating_sub(options.history_in_prompt)..];
    let listed = options.k.min(candidates.len());
    // With the LLM's order weighing nothing the final list is the first `listed` candidates:
    // the LLM is shown exactly those, to explain them (and order them, for `llm_order`), rather
    // than choosing among all candidates for a choice that is not used and whose reasons
    // would cover other items.
    let offered: &[String] = if options.llm_weight > 0.0 {
        &candidate_ids
    } else {
        &candidate_ids[..listed]
    };
    let messages = recommendation_messages(
        &recent.iter().map(describe).collect::<Vec<_>>(),
        &offered.iter().map(describe).collect::<Vec<_>>(),
        listed,
        wish,
        options.with_reasons,
    );
    let mut request = GenerationRequest::new(messages);
    request.max_tokens = options.generated_tokens_for(listed);

    let generate_start = Instant::now();
    let grammar = ItemListGrammar::new(offered, listed, options.with_reasons, 160);
    let mut errors = OutputErrors::default();
    let (parsed, constrained) = match generator.generate_constrained(&request, &grammar) {
        Some(completion) => {
            let completion = completion?;
            (parse_item_list(&completion.text, offered, history), true)
        }
        None => {
            let mut attempt = 0;
            loop {
                let completion = generator.generate(&request, &mut |_| {})?;
                let parsed = parse_item_list(&completion.text, offered, history);
                if attempt == 0 {
                    errors.candidate_errors = parsed.candidate_errors;
                    errors.duplicates = parsed.duplicates;
                    errors.history_repeats = parsed.history_repeats;
                    errors.unparseable = parsed
                        .unparseable_lines
                        .max(parsed.items.is_empty() as usize);
                }
                if parsed.is_clean() || attempt >= options.retries {
                    break (parsed, false);
                }
                attempt += 1;
                errors.retries = attempt;
                request.messages.push(ChatMessage {
                    role: ibex_generator::Role::Assistant,
                    content: completion.text,
                });
                request
                    .messages
                    .push(ChatMessage::user(retry_message(&parsed)));
            }
        }
    };
    let generate_ms = elapsed_ms(generate_start);
    if constrained {
        // Under the grammar these are zero by construction; count anyway, so a grammar bug
        // would show in the reported error rates instead of hiding.
        errors.candidate_errors = parsed.candidate_errors;
        errors.duplicates = parsed.duplicates;
        errors.history_repeats = parsed.history_repeats;
        errors.unparseable = parsed.unparseable_lines;
    }
    errors.fell_back = parsed.items.is_empty();

    let items = final_ranking(&candidates, &parsed, options, listed);
    Ok(Recommendation {
        items,
        candidates,
        llm_order: parsed.items.iter().map(|i| i.id.clone()).collect(),
        errors,
        constrained,
        model: generator.model().to_string(),
        candidates_ms,
        generate_ms,
    })
}

fn retry_message(parsed: &ParsedItemList) -> String {
    let mut problems = Vec::new();
    if parsed.candidate_errors > 0 {
        problems.push("named items that are not candidates");
    }
    if parsed.duplicates > 0 {
        problems.push("repeated an item");
    }
    if parsed.history_repeats > 0 {
        problems.push("named items the user already has");
    }
    if parsed.unparseable_lines > 0 || parsed.items.is_empty() {
        problems.push("had lines that are not `ID: reason`");
    }
    format!(
        "Your list {}. Answer again with only IDs from the candidate list, each once, one per line.",
        problems.join(" and ")
    )
}

/// The final order of `candidates` (best first) given the LLM's list: reciprocal-rank fusion
/// of the candidate order and the LLM's order, the LLM's weighted by `llm_weight`; the first
/// `k` candidate indices.
pub fn fuse(
    candidates: usize,
    llm_ranks: &[Option<usize>],
    llm_weight: f32,
    k: usize,
) -> Vec<usize> {
    let candidate_order = (0..candidates).map(|i| (i, i + 1));
    let llm_order = llm_ranks
        .iter()
        .take(candidates)
        .enumerate()
        .filter_map(|(i, rank)| rank.map(|r| (i, r)));
    let fused = reciprocal_rank_scores(
        [
            (candidate_order.collect::<Vec<_>>(), 1.0),
            (llm_order.collect::<Vec<_>>(), llm_weight),
        ],
        RRF_K,
    );
    let mut scored: Vec<(f32, usize)> = (0..candidates)
        .map(|i| (fused.get(&i).copied().unwrap_or(0.0), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

/// Fuses the LLM's list with the candidate order (see [`fuse`]), keeping the LLM's reasons.
fn final_ranking(
    candidates: &[Candidate],
    parsed: &ParsedItemList,
    options: &RecommendOptions,
    listed: usize,
) -> Vec<RecommendedItem> {
    let llm_rank: HashMap<&str, (usize, Option<&String>)> = parsed
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| (item.id.as_str(), (i + 1, item.reason.as_ref())))
        .collect();
    let ranks: Vec<Option<usize>> = candidates
        .iter()
        .map(|c| llm_rank.get(c.id.as_str()).map(|(r, _)| *r))
        .collect();
    fuse(candidates.len(), &ranks, options.llm_weight, listed)
        .into_iter()
        .map(|i| {
            let c = &candidates[i];
            let picked = llm_rank.get(c.id.as_str());
            RecommendedItem {
                id: c.id.clone(),
                title: c.title.clone(),
                reason: picked.and_then(|(_, r)| r.cloned()),
                candidate_rank: i + 1,
                llm_rank: picked.map(|(r, _)| *r),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, vector: [f32; 2]) -> CatalogItem {
        let mut vector = vector.to_vec();
        normalize(&mut vector);
        CatalogItem {
            id: id.into(),
            title: format!("Title {id}"),
            text: String::new(),
            vector,
        }
    }

    /// Items on the unit circle: "a" and "b" point one way, "y" and "z" the other.
    fn catalog() -> ItemCatalog {
        ItemCatalog::from_items(vec![
            item("a", [1.0, 0.0]),
            item("b", [0.9, 0.1]),
            item("c", [0.6, 0.6]),
            item("y", [0.1, 0.9]),
            item("z", [0.0, 1.0]),
        ])
    }

    fn ids(candidates: &[Candidate]) -> Vec<&str> {
        candidates.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn profile_is_the_normalized_mean_of_known_items() {
        let catalog = catalog();
        let profile = catalog
            .profile(&["a".into(), "z".into(), "unknown".into()])
            .unwrap();
        let expected = std::f32::consts::FRAC_1_SQRT_2;
        assert!((profile[0] - expected).abs() < 1e-6 && (profile[1] - expected).abs() < 1e-6);
        assert!(catalog.profile(&["unknown".into()]).is_none());
    }

    #[test]
    fn embedding_candidates_exclude_the_history_and_follow_similarity() {
        let catalog = catalog();
        let cands = candidates(&catalog, None, &["a".into()], None, 3, 0.25, None);
        assert_eq!(ids(&cands), ["b", "c", "y"]);
        assert!(cands.windows(2).all(|w| w[0].score >= w[1].score));
        // RRF with weight 1 (no co-occurrence: the embedding list counts fully) at ranks 1, 2, 3.
        assert!((cands[0].score - 1.0 / 61.0).abs() < 1e-9);
    }

    #[test]
    fn co_occurrence_and_a_wish_move_candidates() {
        let catalog = catalog();
        // Every user who had "a" also had "z": co-occurrence ranks "z" first of the others.
        let histories: Vec<Vec<String>> = (0..5)
            .map(|_| vec!["a".to_string(), "z".to_string()])
            .collect();
        let co = CoOccurrence::build(histories.iter().map(Vec::as_slice));
        let plain = candidates(&catalog, None, &["a".into()], None, 4, 0.25, None);
        let with_co = candidates(&catalog, Some(&co), &["a".into()], None, 4, 0.25, None);
        let position = |c: &[Candidate], id: &str| c.iter().position(|x| x.id == id);
        assert!(
            position(&with_co, "z") < position(&plain, "z"),
            "{:?} vs {:?}",
            ids(&with_co),
            ids(&plain)
        );
        // A wish pointing at "y" lifts it above "c" (embedding alone puts "c" first).
        let wish = catalog.get("y").unwrap().vector.clone();
        let wished = candidates(&catalog, None, &["a".into()], Some(&wish), 4, 0.25, None);
        assert!(
            position(&wished, "y") < position(&wished, "c"),
            "{:?}",
            ids(&wished)
        );
        assert!(!ids(&wished).contains(&"a"));
    }

    #[test]
    fn fusion_with_the_llm_order() {
        // Candidates 0..4; the LLM listed candidate 3 first and candidate 1 third (its second
        // entry was not a candidate, so rank 2 is skipped).
        let llm = [None, Some(3), None, Some(1)];
        assert_eq!(
            fuse(4, &llm, 0.0, 4),
            [0, 1, 2, 3],
            "weight 0: candidate order"
        );
        assert_eq!(
            fuse(4, &llm, 100.0, 2),
            [3, 1],
            "a large weight: the LLM's order"
        );
        // Weight 1: candidates 3 (1/64 + 1/61) and 1 (1/62 + 1/63) both pass candidate 0 (1/61).
        assert_eq!(fuse(4, &llm, 1.0, 4), [3, 1, 0, 2]);
        assert!(fuse(0, &[], 1.0, 3).is_empty());
    }
}
