//! Pseudo-relevance feedback: the best documents of a first round are taken as relevant, the
//! query is expanded from them, and the lists are retrieved again with the expanded query.
//!
//! - BM25: RM3 as Anserini's `-rm3` computes it (Abdul-Jaleel et al. 2004; Lin's Anserini
//!   `Rm3Reranker`): each feedback document's term counts, without terms of one character or
//!   over 20, terms that are not plain `[a-z0-9]`, and terms found in more than 10% of the
//!   collection's documents, normalized to sum 1 and weighted by the document's first-round
//!   score; the best `terms` of the sum, normalized to sum 1, interpolated with the query's own
//!   terms (normalized to sum 1) with weight `original_weight` on the query's.
//! - Dense: Rocchio's update of the query vector, q' = q + beta x (mean of the feedback documents'
//!   vectors), renormalized; a document's vector is its chunk closest to the query.
//!
//! The feedback documents come from each list's own first round, or, in hybrid mode with
//! [`FeedbackSource::Fused`], from the fused first-round ranking for both lists (the BM25 query
//! then learns from documents the dense list found, and the dense query from BM25's).

use std::collections::{BTreeMap, HashMap};

use ibex_indexer::Index;
use tantivy::Term;

use crate::diversity::document_vector;
use crate::error::{Result, SearchError};
use crate::fusion::DocScore;
use crate::lexical::{analyze, with_analyzer};
use crate::retriever::{fuse_hybrid, Bm25Retriever, DenseRetriever, PreparedQuery, Retriever};
use crate::{Mode, SearchRequest};

/// Most feedback documents and expansion terms a request may ask for: each feedback document is
/// read and analyzed at query time.
pub const MAX_FEEDBACK_DOCUMENTS: usize = 100;
/// Most expansion terms (each a clause of the second BM25 query).
pub const MAX_FEEDBACK_TERMS: usize = 100;

/// Where the feedback documents come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedbackSource {
    /// Each list learns from its own first round (RM3 from BM25's best, Rocchio from dense's).
    #[default]
    OwnList,
    /// Both lists learn from the fused first-round ranking (hybrid mode only).
    Fused,
}

/// Pseudo-relevance feedback settings (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback {
    /// First-round documents taken as relevant (Anserini's `fbDocs`, 10).
    pub documents: usize,
    /// Expansion terms kept (Anserini's `fbTerms`, 10); 0 turns RM3 off.
    pub terms: usize,
    /// Weight of the original query's terms against the expansion's, in [0, 1] (Anserini's
    /// `originalQueryWeight`, 0.5).
    pub original_weight: f32,
    /// Rocchio's beta: weight of the feedback documents' mean vector added to the unit query
    /// vector; 0 turns dense feedback off.
    pub rocchio_beta: f32,
    /// Where the feedback documents come from.
    pub source: FeedbackSource,
}

impl Default for Feedback {
    fn default() -> Self {
        Feedback {
            documents: 10,
            terms: 10,
            original_weight: 0.5,
            rocchio_beta: 0.0,
            source: FeedbackSource::OwnList,
        }
    }
}

impl Feedback {
    /// Checks the settings against the request they come with.
    pub(crate) fn validate(&self, request: &SearchRequest) -> Result<()> {
        let invalid = |why: String| Err(SearchError::InvalidRequest(why));
        if self.documents == 0 || self.documents > MAX_FEEDBACK_DOCUMENTS {
            return invalid(format!(
                "feedback documents must be within 1..={MAX_FEEDBACK_DOCUMENTS}, not {}",
                self.documents
            ));
        }
        if self.terms > MAX_FEEDBACK_TERMS {
            return invalid(format!(
                "feedback terms must be at most {MAX_FEEDBACK_TERMS}, not {}",
                self.terms
            ));
        }
        if !(0.0..=1.0).contains(&self.original_weight) {
            return invalid(format!(
                "the original query's weight must be within [0, 1], not {}",
                self.original_weight
            ));
        }
        if !self.rocchio_beta.is_finite() || self.rocchio_beta < 0.0 {
            return invalid(format!(
                "the Rocchio weight must be a finite number >= 0, not {}",
                self.rocchio_beta
            ));
        }
        if self.source == FeedbackSource::Fused && request.mode != Mode::Hybrid {
            return invalid("feedback from the fused ranking needs hybrid mode".into());
        }
        if request.statistics.is_some() && self.terms > 0 && request.mode != Mode::Dense {
            // Expansion terms come from this shard's documents: the collection's statistics
            // sent with the request do not hold them.
            return invalid(
                "RM3 feedback is not available on a sharded index (its expansion terms would be \
                 scored without the collection's statistics); use rocchio only"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Feedback settings as the REST API and the Python package take them: every field optional,
/// `from` named `own` or `fused`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackOptions {
    /// First-round documents taken as relevant (default 10).
    #[serde(default)]
    pub documents: Option<usize>,
    /// RM3 expansion terms (default 10; 0: no RM3).
    #[serde(default)]
    pub terms: Option<usize>,
    /// Weight of the original query's terms (default 0.5).
    #[serde(default)]
    pub original_weight: Option<f32>,
    /// Rocchio's beta (default 0: off).
    #[serde(default)]
    pub rocchio: Option<f32>,
    /// `own` (default) or `fused`.
    #[serde(default)]
    pub from: Option<String>,
}

impl FeedbackOptions {
    /// The settings these options give, defaults filled in (ranges are checked by the search).
    pub fn settings(&self) -> Result<Feedback> {
        let defaults = Feedback::default();
        Ok(Feedback {
            documents: self.documents.unwrap_or(defaults.documents),
            terms: self.terms.unwrap_or(defaults.terms),
            original_weight: self.original_weight.unwrap_or(defaults.original_weight),
            rocchio_beta: self.rocchio.unwrap_or(defaults.rocchio_beta),
            source: match self.from.as_deref() {
                None | Some("own") => FeedbackSource::OwnList,
                Some("fused") => FeedbackSource::Fused,
                Some(other) => {
                    return Err(SearchError::InvalidRequest(format!(
                        "feedback `from` must be `own` or `fused`, not `{other}`"
                    )))
                }
            },
        })
    }
}

/// What feedback changes in a prepared query: the weighted terms of the second BM25 query and
/// the second dense query vector (`None`: that list runs as before).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expansion {
    /// The BM25 query's terms and weights (RM3).
    pub terms: Option<Vec<(String, f32)>>,
    /// The dense query vector (Rocchio).
    pub vector: Option<Vec<f32>>,
}

/// Runs the first round for `request` and returns the expanded queries.
pub(crate) fn expand(
    index: &Index,
    request: &SearchRequest,
    prepared: &PreparedQuery,
    feedback: &Feedback,
) -> Result<Expansion> {
    let rm3 = feedback.terms > 0 && request.mode != Mode::Dense;
    let rocchio = feedback.rocchio_beta > 0.0 && request.mode != Mode::Bm25;
    if !rm3 && !rocchio {
        return Ok(Expansion::default());
    }
    let first_round =
        |depth: usize, bm25: bool, dense: bool| -> Result<(Vec<DocScore>, Vec<DocScore>)> {
            let lexical = if bm25 {
                Bm25Retriever {
                    depth,
                    statistics: request.statistics.as_deref(),
                }
                .retrieve_counted(index, prepared, 0)?
                .ranked
            } else {
                Vec::new()
            };
            let dense = if dense {
                DenseRetriever {
                    depth,
                    aggregation: request.aggregation,
                }
                .retrieve(index, prepared)?
            } else {
                Vec::new()
            };
            Ok((lexical, dense))
        };
    let (for_terms, for_vector) = match feedback.source {
        FeedbackSource::OwnList => {
            let (lexical, dense) = first_round(feedback.documents, rm3, rocchio)?;
            (lexical, dense)
        }
        FeedbackSource::Fused => {
            let depth = request.candidates.max(request.top_k);
            let (lexical, dense) = first_round(depth, true, true)?;
            let fused = fuse_hybrid(request.fusion, &lexical, &dense, feedback.documents);
            (fused.clone(), fused)
        }
    };
    let terms = if rm3 {
        Some(rm3_query(index, prepared.text, &for_terms, feedback)?)
    } else {
        None
    };
    let vector = match (&prepared.vector, rocchio) {
        (Some(query), true) => Some(rocchio_vector(
            index,
            query,
            &for_vector[..for_vector.len().min(feedback.documents)],
            feedback.rocchio_beta,
        )?),
        _ => None,
    };
    Ok(Expansion { terms, vector })
}

/// The RM3 query for `text` from the first `feedback.documents` of `ranked`.
fn rm3_query(
    index: &Index,
    text: &str,
    ranked: &[DocScore],
    feedback: &Feedback,
) -> Result<Vec<(String, f32)>> {
    let searcher = index.searcher();
    let collection_documents = searcher.num_docs().max(1);
    let contents = index.fields().contents;
    let mut documents = Vec::new();
    for doc in ranked.iter().take(feedback.documents) {
        if let Some(stored) = index.get_document(&doc.id)? {
            let counts = with_analyzer(|analyzer| {
                let mut counts: HashMap<String, u32> = HashMap::new();
                for field in [&stored.title, &stored.text] {
                    let mut stream = analyzer.token_stream(field);
                    while let Some(token) = stream.next() {
                        *counts.entry(token.text.clone()).or_default() += 1;
                    }
                }
                counts
            });
            documents.push((counts, doc.score));
        }
    }
    let mut document_frequency = |term: &str| -> Result<u64> {
        Ok(searcher.doc_freq(&Term::from_field_text(contents, term))?)
    };
    let model = relevance_model(
        &documents,
        &mut document_frequency,
        collection_documents,
        feedback.terms,
    )?;
    Ok(interpolate(
        &analyze(text),
        &model,
        feedback.original_weight,
    ))
}

/// Whether RM3 may take `term` as an expansion term (Anserini's rule, before the frequency one).
fn expansion_candidate(term: &str) -> bool {
    (2..=20).contains(&term.len())
        && term
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The relevance model of feedback documents (term counts and first-round scores): each
/// document's admissible terms normalized to sum 1 and weighted by its score, summed, the best
/// `terms` kept (ties in term order) and normalized to sum 1.
pub fn relevance_model(
    documents: &[(HashMap<String, u32>, f32)],
    document_frequency: &mut dyn FnMut(&str) -> Result<u64>,
    collection_documents: u64,
    terms: usize,
) -> Result<Vec<(String, f32)>> {
    let mut frequent: HashMap<String, bool> = HashMap::new();
    let mut weights: BTreeMap<String, f64> = BTreeMap::new();
    for (counts, score) in documents {
        let mut kept: Vec<(&String, u32)> = Vec::new();
        for (term, &count) in counts {
            if !expansion_candidate(term) {
                continue;
            }
            let too_frequent = match frequent.get(term) {
                Some(&known) => known,
                None => {
                    let df = document_frequency(term)?;
                    let too = df as f64 / collection_documents as f64 > 0.1;
                    frequent.insert(term.clone(), too);
                    too
                }
            };
            if !too_frequent {
                kept.push((term, count));
            }
        }
        let total: u64 = kept.iter().map(|(_, c)| u64::from(*c)).sum();
        if total == 0 {
            continue;
        }
        for (term, count) in kept {
            *weights.entry(term.clone()).or_default() +=
                f64::from(count) / total as f64 * f64::from(*score);
        }
    }
    let mut ranked: Vec<(String, f64)> = weights.into_iter().collect();
    // Stable: equal weights stay in term order.
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(terms);
    let sum: f64 = ranked.iter().map(|(_, w)| w).sum();
    Ok(if sum > 0.0 {
        ranked
            .into_iter()
            .map(|(t, w)| (t, (w / sum) as f32))
            .collect()
    } else {
        Vec::new()
    })
}

/// `original_weight` x the query's terms (counts normalized to sum 1) + (1 - `original_weight`)
/// x the relevance model, in term order.
pub fn interpolate(
    query: &BTreeMap<String, u32>,
    model: &[(String, f32)],
    original_weight: f32,
) -> Vec<(String, f32)> {
    let total: u32 = query.values().sum();
    let mut weights: BTreeMap<String, f32> = BTreeMap::new();
    if total > 0 {
        for (term, &count) in query {
            *weights.entry(term.clone()).or_default() +=
                original_weight * count as f32 / total as f32;
        }
    }
    for (term, weight) in model {
        *weights.entry(term.clone()).or_default() += (1.0 - original_weight) * weight;
    }
    weights.into_iter().filter(|(_, w)| *w > 0.0).collect()
}

/// Rocchio's query vector: `query` + `beta` x the mean of the documents' vectors, as a unit
/// vector. Documents without vectors are skipped; with none, the query is returned.
fn rocchio_vector(
    index: &Index,
    query: &[f32],
    documents: &[DocScore],
    beta: f32,
) -> Result<Vec<f32>> {
    let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(documents.len());
    for document in documents {
        vectors.extend(document_vector(index, &document.id, Some(query))?);
    }
    Ok(rocchio(query, &vectors, beta))
}

/// `query` + `beta` x the mean of `vectors`, renormalized to unit length.
pub fn rocchio(query: &[f32], vectors: &[Vec<f32>], beta: f32) -> Vec<f32> {
    if vectors.is_empty() {
        return query.to_vec();
    }
    let scale = beta / vectors.len() as f32;
    let mut out = query.to_vec();
    for vector in vectors {
        for (o, v) in out.iter_mut().zip(vector) {
            *o += scale * v;
        }
    }
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|x| *x /= norm);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(t, c)| (t.to_string(), *c)).collect()
    }

    #[test]
    fn rm3_weighs_terms_by_document_share_and_score() {
        // Document 1 (score 2): wing 3, flow 1 -> shares 0.75, 0.25, weighted 1.5, 0.5.
        // Document 2 (score 1): flow 2, shock 2, "a" (too short), "x-y" (not plain),
        // "the" (in 50% of documents) -> flow 0.5, shock 0.5.
        // Sum: wing 1.5, flow 1.0, shock 0.5; the best 2 normalized: wing 0.6, flow 0.4.
        let documents = vec![
            (counts(&[("wing", 3), ("flow", 1)]), 2.0),
            (
                counts(&[("flow", 2), ("shock", 2), ("a", 5), ("x-y", 4), ("the", 9)]),
                1.0,
            ),
        ];
        let mut df = |term: &str| Ok(if term == "the" { 50 } else { 3 });
        let model = relevance_model(&documents, &mut df, 100, 2).unwrap();
        assert_eq!(model.len(), 2);
        assert_eq!(model[0].0, "wing");
        assert!((model[0].1 - 0.6).abs() < 1e-6, "{model:?}");
        assert_eq!(model[1].0, "flow");
        assert!((model[1].1 - 0.4).abs() < 1e-6, "{model:?}");
    }

    #[test]
    fn rm3_interpolates_the_query_with_the_model() {
        // Query "wing wing pressure": wing 2/3, pressure 1/3; weight 0.5 on it.
        let query: BTreeMap<String, u32> =
            [("wing".to_string(), 2), ("pressure".to_string(), 1)].into();
        let model = vec![("wing".to_string(), 0.6), ("flow".to_string(), 0.4)];
        let expanded = interpolate(&query, &model, 0.5);
        let weight = |t: &str| expanded.iter().find(|(x, _)| x == t).map(|(_, w)| *w);
        assert!((weight("wing").unwrap() - (1.0 / 3.0 + 0.3)).abs() < 1e-6);
        assert!((weight("pressure").unwrap() - 1.0 / 6.0).abs() < 1e-6);
        assert!((weight("flow").unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(expanded.len(), 3);
        // Weight 1 keeps the query alone.
        let kept = interpolate(&query, &model, 1.0);
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn rocchio_moves_the_query_toward_the_documents_mean() {
        let query = [1.0, 0.0];
        let documents = vec![vec![0.0, 1.0], vec![0.6, 0.8]];
        // Mean (0.3, 0.9); beta 0.5: (1.15, 0.45), renormalized.
        let moved = rocchio(&query, &documents, 0.5);
        let norm = (1.15f32 * 1.15 + 0.45 * 0.45).sqrt();
        assert!((moved[0] - 1.15 / norm).abs() < 1e-6);
        assert!((moved[1] - 0.45 / norm).abs() < 1e-6);
        assert_eq!(rocchio(&query, &[], 0.5), query.to_vec());
    }
}
