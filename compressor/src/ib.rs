//! The information-bottleneck selector.
//!
//! Each sentence s gets a usefulness u(s) (how much it tells about what the query needs: a proxy
//! for its contribution to I(X̃; Y)) and a cost c(s) (its length, a proxy for what it adds to
//! I(X̃; X), plus its redundancy with sentences already kept, which adds length without adding
//! information). The selector picks the subset S maximizing
//!
//! Σ_{s∈S} (u(s) − τ) − β · Σ_{s∈S} tokens(s) / 100 − λ · Σ_{s∈S} redundancy(s, S)
//!
//! under an optional token budget, greedily by marginal gain (the redundancy term makes the
//! objective submodular, for which greedy selection is the standard approximation). τ is the
//! usefulness a sentence must exceed to be worth anything at all, so the result is empty when no
//! sentence is useful (RECOMP's selective augmentation). Kept sentences are returned in their
//! original order.

use std::sync::Arc;

use ibex_embedder::vector::dot;
use ibex_embedder::{Embedder, TextKind};

use crate::segment::split_sentences;
use crate::{Compression, Compressor, KeptSpan, Passage, Result, ScoredSentence};

/// What a scorer says of a list of texts.
#[derive(Debug, Clone, Default)]
pub struct TextScores {
    /// One score per text (higher is more useful for the query).
    pub scores: Vec<f32>,
    /// One vector per text, when the scorer has them, for redundancy (cosine between kept
    /// sentences).
    pub vectors: Option<Vec<Vec<f32>>>,
}

/// Usefulness of each sentence for a query: the seam where an LLM-scored variant plugs in.
pub trait UsefulnessScorer {
    /// Scores `sentences` (or passages) for `query`.
    fn score(&self, query: &str, sentences: &[&str]) -> Result<TextScores>;

    /// The number of tokens of `text` (the unit of compression rates and budgets).
    fn count_tokens(&self, text: &str) -> Result<usize>;
}

/// Usefulness as cosine similarity between the query's and the sentence's embeddings, with the
/// same embedder as retrieval.
pub struct EmbeddingScorer {
    embedder: Arc<dyn Embedder>,
}

impl EmbeddingScorer {
    /// Scores with `embedder`.
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        EmbeddingScorer { embedder }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let na = dot(a, a).sqrt();
    let nb = dot(b, b).sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot(a, b) / (na * nb)
    }
}

impl UsefulnessScorer for EmbeddingScorer {
    fn score(&self, query: &str, sentences: &[&str]) -> Result<TextScores> {
        let query_vector = self
            .embedder
            .embed(&[query], TextKind::Query)?
            .pop()
            .unwrap_or_default();
        let vectors = self.embedder.embed(sentences, TextKind::Document)?;
        let scores = vectors.iter().map(|v| cosine(&query_vector, v)).collect();
        Ok(TextScores {
            scores,
            vectors: Some(vectors),
        })
    }

    fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.embedder.tokenize(text)?.len())
    }
}

/// Parameters of the selector (defaults chosen by `ibex eval-compress`; see EVALUATION.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IbParams {
    /// τ: usefulness below which a sentence is worth nothing.
    pub relevance_floor: f32,
    /// β: cost per 100 tokens kept.
    pub beta: f32,
    /// λ: weight of redundancy (highest cosine with a kept sentence).
    pub redundancy: f32,
    /// Token budget used when the caller gives none.
    pub default_budget: Option<usize>,
    /// A sentence right before a kept one, in the same passage, is kept for coherence when it
    /// has at most this many tokens, is above the floor, and fits the budget (0: never).
    pub neighbour_tokens: usize,
    /// Weight of the sentence's passage in its usefulness: u(s) = (1 − w) · score(s) + w ·
    /// score(passage of s). A sentence means what it means in its passage: the passage's
    /// relevance tells which of several similar-looking sentences is about the right thing.
    pub passage_weight: f32,
    /// At most this many sentences are scored (in passage rank order), bounding time and memory
    /// on very large inputs; the rest count as context but are never kept.
    pub max_sentences: usize,
    /// Answer preservation: when the best passage's score leads the second's by less than this
    /// margin (the scorer cannot tell which passage answers), the default budget is multiplied
    /// by [`IbParams::uncertain_budget_factor`]: keeping more rather than dropping the answer.
    /// Only the default budget grows; a budget the caller gives is kept. Passages are scored
    /// only with a passage weight above 0, so the rule needs one. 0 turns it off.
    pub uncertain_margin: f32,
    /// How much the default budget grows when the selection is uncertain.
    pub uncertain_budget_factor: f32,
}

impl Default for IbParams {
    fn default() -> Self {
        IbParams {
            relevance_floor: 0.25,
            beta: 0.0,
            redundancy: 0.5,
            default_budget: Some(64),
            neighbour_tokens: 0,
            passage_weight: 0.7,
            max_sentences: 2000,
            uncertain_margin: 0.0,
            uncertain_budget_factor: 2.0,
        }
    }
}

/// The information-bottleneck compressor over sentences.
pub struct IbCompressor<S: UsefulnessScorer> {
    scorer: S,
    params: IbParams,
}

impl<S: UsefulnessScorer> IbCompressor<S> {
    /// A compressor scoring with `scorer`.
    pub fn new(scorer: S, params: IbParams) -> Self {
        IbCompressor { scorer, params }
    }

    /// The selector's parameters.
    pub fn params(&self) -> &IbParams {
        &self.params
    }

    /// The usefulness scorer.
    pub fn scorer(&self) -> &S {
        &self.scorer
    }
}

/// A sentence located in the input.
pub(crate) struct Located {
    pub passage: usize,
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub tokens: usize,
}

/// Splits passages into sentences with token counts.
pub(crate) fn locate_sentences(
    passages: &[Passage],
    count_tokens: &dyn Fn(&str) -> Result<usize>,
) -> Result<Vec<Located>> {
    let mut out = Vec::new();
    for (p, passage) in passages.iter().enumerate() {
        let chars: Vec<char> = passage.text.chars().collect();
        for span in split_sentences(&passage.text) {
            let text: String = chars[span.start..span.end].iter().collect();
            let tokens = count_tokens(&text)?;
            out.push(Located {
                passage: p,
                start: span.start,
                end: span.end,
                text,
                tokens,
            });
        }
    }
    Ok(out)
}

/// Assembles a compression from the sentences and which are kept.
pub(crate) fn assemble(
    passages: &[Passage],
    sentences: &[Located],
    similarity: &[f32],
    usefulness: &[f32],
    kept: &[bool],
) -> Compression {
    let mut text = String::new();
    let mut spans = Vec::new();
    let mut last_passage = None;
    for (i, s) in sentences.iter().enumerate() {
        if !kept[i] {
            continue;
        }
        if let Some(previous) = last_passage {
            text.push_str(if previous == s.passage { " " } else { "\n\n" });
        }
        text.push_str(&s.text);
        last_passage = Some(s.passage);
        let passage = &passages[s.passage];
        spans.push(KeptSpan {
            doc_id: passage.doc_id.clone(),
            start: passage.offset + s.start,
            end: passage.offset + s.end,
            score: usefulness[i],
        });
    }
    let scored = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let passage = &passages[s.passage];
            ScoredSentence {
                doc_id: passage.doc_id.clone(),
                start: passage.offset + s.start,
                end: passage.offset + s.end,
                tokens: s.tokens,
                similarity: similarity[i],
                usefulness: usefulness[i],
                kept: kept[i],
            }
        })
        .collect();
    Compression {
        text,
        spans,
        kept_tokens: sentences
            .iter()
            .zip(kept)
            .filter(|(_, k)| **k)
            .map(|(s, _)| s.tokens)
            .sum(),
        total_tokens: sentences.iter().map(|s| s.tokens).sum(),
        sentences: scored,
    }
}

impl<S: UsefulnessScorer> Compressor for IbCompressor<S> {
    fn compress(
        &self,
        query: &str,
        passages: &[Passage],
        budget: Option<usize>,
    ) -> Result<Compression> {
        let p = &self.params;
        let asked_budget = budget;
        let mut budget = budget.or(p.default_budget).unwrap_or(usize::MAX);
        let sentences = locate_sentences(passages, &|t| self.scorer.count_tokens(t))?;
        let scored_count = sentences.len().min(p.max_sentences);
        let texts: Vec<&str> = sentences[..scored_count]
            .iter()
            .map(|s| s.text.as_str())
            .collect();
        let TextScores {
            scores: mut usefulness,
            vectors,
        } = if texts.is_empty() || query.trim().is_empty() {
            TextScores::default()
        } else {
            self.scorer.score(query, &texts)?
        };
        let mut similarity = usefulness.clone();
        similarity.resize(sentences.len(), 0.0);
        if p.passage_weight > 0.0 && !usefulness.is_empty() {
            // Only passages with scored sentences are scored, so the bound holds here too.
            let scored_passages = sentences[scored_count - 1].passage + 1;
            let passage_texts: Vec<&str> = passages[..scored_passages]
                .iter()
                .map(|p| p.text.as_str())
                .collect();
            let passage_scores = self.scorer.score(query, &passage_texts)?.scores;
            for (u, s) in usefulness.iter_mut().zip(&sentences) {
                *u = (1.0 - p.passage_weight) * *u + p.passage_weight * passage_scores[s.passage];
            }
            if asked_budget.is_none() && budget != usize::MAX && is_uncertain(&passage_scores, p) {
                budget = (budget as f32 * p.uncertain_budget_factor.max(1.0)) as usize;
            }
        }
        usefulness.resize(sentences.len(), f32::NEG_INFINITY);

        let mut kept = vec![false; sentences.len()];
        let mut kept_tokens = 0usize;
        // Highest cosine of each candidate with any kept sentence.
        let mut redundancy = vec![0f32; scored_count];
        loop {
            let mut best: Option<(usize, f32)> = None;
            for i in 0..scored_count {
                if kept[i] || kept_tokens + sentences[i].tokens > budget {
                    continue;
                }
                let gain = (usefulness[i] - p.relevance_floor)
                    - p.beta * sentences[i].tokens as f32 / 100.0
                    - p.redundancy * redundancy[i];
                if gain > 0.0 && best.is_none_or(|(_, g)| gain > g) {
                    best = Some((i, gain));
                }
            }
            let Some((chosen, _)) = best else { break };
            kept[chosen] = true;
            kept_tokens += sentences[chosen].tokens;
            if let Some(vectors) = &vectors {
                for i in 0..scored_count {
                    redundancy[i] =
                        redundancy[i].max(cosine(&vectors[i], &vectors[chosen]).max(0.0));
                }
            }
        }
        if p.neighbour_tokens > 0 {
            for i in 1..scored_count {
                let previous = i - 1;
                if kept[i]
                    && !kept[previous]
                    && sentences[previous].passage == sentences[i].passage
                    && sentences[previous].tokens <= p.neighbour_tokens
                    && usefulness[previous] > p.relevance_floor
                    && kept_tokens + sentences[previous].tokens <= budget
                {
                    kept[previous] = true;
                    kept_tokens += sentences[previous].tokens;
                }
            }
        }
        let usefulness: Vec<f32> = usefulness
            .into_iter()
            .map(|u| if u.is_finite() { u } else { 0.0 })
            .collect();
        Ok(assemble(
            passages,
            &sentences,
            &similarity,
            &usefulness,
            &kept,
        ))
    }
}

/// Whether the best of `passage_scores` leads the second by less than the uncertainty margin
/// (never with fewer than two passages, or with the rule off).
fn is_uncertain(passage_scores: &[f32], p: &IbParams) -> bool {
    if p.uncertain_margin <= 0.0 || passage_scores.len() < 2 {
        return false;
    }
    let (mut best, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &score in passage_scores {
        if score > best {
            second = best;
            best = score;
        } else if score > second {
            second = score;
        }
    }
    best - second < p.uncertain_margin
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// A scorer with fixed scores and vectors per text, recording what it was asked to score:
    /// the selector's arithmetic is tested apart from any model.
    struct FixedScorer {
        scores: HashMap<&'static str, (f32, Vec<f32>)>,
        asked: RefCell<Vec<usize>>,
    }

    impl FixedScorer {
        fn new(entries: &[(&'static str, f32, [f32; 2])]) -> Self {
            FixedScorer {
                scores: entries
                    .iter()
                    .map(|(t, s, v)| (*t, (*s, v.to_vec())))
                    .collect(),
                asked: RefCell::new(Vec::new()),
            }
        }
    }

    impl UsefulnessScorer for FixedScorer {
        fn score(&self, _query: &str, texts: &[&str]) -> Result<TextScores> {
            self.asked.borrow_mut().push(texts.len());
            let lookup = |t: &&str| self.scores.get(t).cloned().unwrap_or((0.0, vec![0.0, 1.0]));
            Ok(TextScores {
                scores: texts.iter().map(|t| lookup(t).0).collect(),
                vectors: Some(texts.iter().map(|t| lookup(t).1).collect()),
            })
        }

        fn count_tokens(&self, text: &str) -> Result<usize> {
            Ok(text.split_whitespace().count())
        }
    }

    fn params() -> IbParams {
        IbParams {
            passage_weight: 0.0,
            default_budget: None,
            ..IbParams::default()
        }
    }

    fn passage(doc_id: &str, text: &str, offset: usize) -> Passage {
        Passage {
            doc_id: doc_id.into(),
            text: text.into(),
            offset,
        }
    }

    #[test]
    fn keeps_useful_sentences_in_original_order_with_document_offsets() {
        let scorer = FixedScorer::new(&[
            ("Alpha one two.", 0.9, [1.0, 0.0]),
            ("Beta noise.", 0.1, [0.0, 1.0]),
            ("Gamma three.", 0.8, [0.0, 1.0]),
        ]);
        let compressor = IbCompressor::new(scorer, params());
        let passages = [passage("d", "Alpha one two. Beta noise. Gamma three.", 100)];
        let c = compressor.compress("q", &passages, None).unwrap();
        assert_eq!(c.text, "Alpha one two. Gamma three.");
        let kept: Vec<(usize, usize)> = c.spans.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(kept, [(100, 114), (127, 139)]);
        assert_eq!((c.kept_tokens, c.total_tokens), (5, 7));
    }

    #[test]
    fn nothing_above_the_floor_keeps_nothing() {
        let scorer = FixedScorer::new(&[("Weak one.", 0.2, [1.0, 0.0])]);
        let compressor = IbCompressor::new(scorer, params());
        let c = compressor
            .compress("q", &[passage("d", "Weak one.", 0)], None)
            .unwrap();
        assert!(c.text.is_empty() && c.spans.is_empty());
        assert_eq!(c.rate(), 0.0);
    }

    #[test]
    fn the_budget_bounds_kept_tokens_and_the_best_gain_goes_first() {
        let scorer = FixedScorer::new(&[
            (
                "Long useful sentence with many words here.",
                0.7,
                [1.0, 0.0],
            ),
            ("Short best.", 0.9, [0.0, 1.0]),
        ]);
        let compressor = IbCompressor::new(scorer, params());
        let passages = [passage(
            "d",
            "Long useful sentence with many words here. Short best.",
            0,
        )];
        let c = compressor.compress("q", &passages, Some(5)).unwrap();
        assert_eq!(c.text, "Short best.");
        assert!(c.kept_tokens <= 5);
    }

    #[test]
    fn a_redundant_sentence_is_not_kept_twice() {
        // Same vector, both useful: the second adds length but no information.
        let scorer = FixedScorer::new(&[
            ("Paris is the capital.", 0.9, [1.0, 0.0]),
            ("The capital is Paris.", 0.85, [1.0, 0.0]),
            ("France is in Europe.", 0.6, [0.0, 1.0]),
        ]);
        let mut strict = params();
        strict.redundancy = 1.0;
        let compressor = IbCompressor::new(scorer, strict);
        let passages = [passage(
            "d",
            "Paris is the capital. The capital is Paris. France is in Europe.",
            0,
        )];
        let c = compressor.compress("q", &passages, None).unwrap();
        assert_eq!(c.text, "Paris is the capital. France is in Europe.");
    }

    #[test]
    fn an_uncertain_choice_of_passage_grows_the_default_budget_only() {
        // Two one-sentence passages scored 0.9 and 0.85: which one answers is uncertain at a
        // margin of 0.5, not at 0.01.
        let scorer = || {
            FixedScorer::new(&[
                ("First claim here.", 0.9, [1.0, 0.0]),
                ("Second claim there.", 0.85, [0.0, 1.0]),
            ])
        };
        let passages = [
            passage("a", "First claim here.", 0),
            passage("b", "Second claim there.", 0),
        ];
        let mut rule = params();
        rule.passage_weight = 0.5;
        rule.default_budget = Some(3);
        let kept = |params: IbParams, budget: Option<usize>| {
            let c = IbCompressor::new(scorer(), params)
                .compress("q", &passages, budget)
                .unwrap();
            c.kept_tokens
        };
        // Off: the budget of 3 keeps one sentence.
        assert_eq!(kept(rule, None), 3);
        rule.uncertain_margin = 0.5;
        // On: twice the budget, both sentences.
        assert_eq!(kept(rule, None), 6);
        // A budget the caller gives is kept.
        assert_eq!(kept(rule, Some(3)), 3);
        // A clear lead: no growth.
        rule.uncertain_margin = 0.01;
        assert_eq!(kept(rule, None), 3);
    }

    #[test]
    fn passage_weight_blends_the_passage_score_in() {
        let scorer = FixedScorer::new(&[
            ("Answer here.", 0.3, [1.0, 0.0]),
            ("Other.", 0.0, [0.0, 1.0]),
            ("Answer here. Other.", 0.9, [1.0, 0.0]),
        ]);
        let mut blended = params();
        blended.passage_weight = 0.5;
        blended.relevance_floor = 0.5;
        let compressor = IbCompressor::new(scorer, blended);
        let c = compressor
            .compress("q", &[passage("d", "Answer here. Other.", 0)], None)
            .unwrap();
        // u = 0.5 * 0.3 (the sentence) + 0.5 * 0.9 (its passage); similarity stays the sentence's.
        assert!((c.sentences[0].usefulness - 0.6).abs() < 1e-6);
        assert!((c.sentences[0].similarity - 0.3).abs() < 1e-6);
        assert!(c.sentences[0].kept && !c.sentences[1].kept);
    }

    #[test]
    fn sentences_past_the_cap_are_neither_scored_nor_kept() {
        let text: String = (0..50).map(|i| format!("Sentence {i}. ")).collect();
        let scorer = FixedScorer::new(&[]);
        let mut capped = params();
        capped.max_sentences = 10;
        capped.relevance_floor = -1.0; // everything scored is worth keeping
        let compressor = IbCompressor::new(scorer, capped);
        let c = compressor
            .compress("q", &[passage("d", &text, 0)], None)
            .unwrap();
        assert_eq!(c.sentences.len(), 50);
        assert_eq!(compressor.scorer.asked.borrow().as_slice(), [10]);
        assert!(c.sentences[10..].iter().all(|s| !s.kept));
    }
}
