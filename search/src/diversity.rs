//! Diversity over a ranked document list: maximal marginal relevance (MMR), and grouping by a
//! metadata field (the "collapse" of Elasticsearch and the group search of Qdrant).
//!
//! RAG contexts are short: when several chunks of one source say the same thing, each extra
//! copy displaces a passage that could have carried the answer. MMR trades relevance against
//! redundancy; grouping caps how many hits one source (an author, a file, a tenant) supplies.

use std::collections::HashMap;

use ibex_indexer::Index;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Result;
use crate::fusion::DocScore;

/// Most candidates MMR may re-rank: each pick compares every remaining candidate with the last
/// one chosen, so the cost is `fetch_k × (offset + top_k)` dot products.
pub const MAX_MMR_FETCH_K: usize = 1_000;

/// Most hits one group may hold.
pub const MAX_PER_GROUP: usize = 100;

/// Maximal marginal relevance (Carbonell and Goldstein 1998): among the best `fetch_k`
/// documents, each next pick maximizes `lambda × relevance − (1 − lambda) × (the highest
/// similarity to a document already picked)`.
///
/// Relevance is the cosine similarity to the query in dense mode (on the same scale as the
/// similarity between documents, as LangChain's and most vector stores' MMR use it), and the
/// score divided by the best candidate's in bm25 and hybrid mode (BM25 and fused scores are
/// non-negative and unbounded, so they are brought to [0, 1] keeping their ratios); similarity
/// is the cosine between the documents' vectors:
/// each document's chunk most similar to the query (or the mean of its chunks when the search
/// has no query vector, as in bm25 mode without a model). Hits keep their mode's score; only
/// their order changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mmr {
    /// 1 ranks by relevance alone, 0 by novelty alone (0.5 is the usual choice).
    pub lambda: f32,
    /// How many of the best documents MMR chooses from (at least `offset + top_k`).
    pub fetch_k: usize,
}

/// Groups hits by the value of a metadata field and keeps the best `per_group` of each: `top_k`
/// and `offset` then count groups. Nested keys are written with dots; a document without the
/// field falls in the group whose value is `null`; a list is one value (the whole list).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBy {
    /// The metadata field.
    pub field: String,
    /// Hits kept per group, best first.
    pub per_group: usize,
}

/// One group of a grouped search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HitGroup {
    /// The field's value shared by the group's documents (`null`: documents without it).
    pub value: Value,
    /// The ids of the group's hits, best first (the hits themselves are in the flat list, in
    /// this order).
    pub ids: Vec<String>,
}

/// The value of `field` in `metadata`: the key itself if present, else the path of its
/// dot-separated parts through nested objects (as filters read `author.name`).
pub fn metadata_value<'m>(metadata: &'m Map<String, Value>, field: &str) -> Option<&'m Value> {
    if let Some(value) = metadata.get(field) {
        return Some(value);
    }
    let mut parts = field.split('.');
    let mut value = metadata.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// The `count` first documents of `candidates` (best first) in MMR order.
pub(crate) fn mmr_order(
    index: &Index,
    query_vector: Option<&[f32]>,
    candidates: &[DocScore],
    lambda: f32,
    count: usize,
    scores_are_cosines: bool,
) -> Result<Vec<DocScore>> {
    let vectors: Vec<Option<Vec<f32>>> = candidates
        .iter()
        .map(|doc| document_vector(index, &doc.id, query_vector))
        .collect::<Result<_>>()?;
    let best = candidates
        .iter()
        .map(|d| d.score)
        .fold(f32::NEG_INFINITY, f32::max);
    let relevance: Vec<f32> = candidates
        .iter()
        .map(|d| match (scores_are_cosines, best > 0.0) {
            (true, _) => d.score,
            (false, true) => d.score / best,
            (false, false) => 1.0,
        })
        .collect();
    let mut closest = vec![f32::NEG_INFINITY; candidates.len()];
    let mut picked = vec![false; candidates.len()];
    let mut order = Vec::with_capacity(count.min(candidates.len()));
    while order.len() < count.min(candidates.len()) {
        let mut best: Option<(usize, f32)> = None;
        for i in (0..candidates.len()).filter(|&i| !picked[i]) {
            let redundancy = if order.is_empty() { 0.0 } else { closest[i] };
            let value = lambda * relevance[i] - (1.0 - lambda) * redundancy;
            // Ties keep the ranked order (the earlier candidate wins).
            if best.is_none_or(|(_, b)| value > b) {
                best = Some((i, value));
            }
        }
        let Some((choice, _)) = best else { break };
        picked[choice] = true;
        order.push(choice);
        if let Some(chosen) = &vectors[choice] {
            for i in (0..candidates.len()).filter(|&i| !picked[i]) {
                // A document without vectors is similar to nothing.
                let similarity = vectors[i].as_ref().map_or(0.0, |v| dot(v, chosen));
                closest[i] = closest[i].max(similarity);
            }
        }
    }
    Ok(order.into_iter().map(|i| candidates[i].clone()).collect())
}

/// A unit vector standing for document `id`: its chunk closest to the query, or the mean of its
/// chunks without a query vector. `None` when it has no live chunk. An error only when a
/// vector could not be read (quantized indexes read chunk vectors from their segment files).
pub(crate) fn document_vector(
    index: &Index,
    id: &str,
    query_vector: Option<&[f32]>,
) -> Result<Option<Vec<f32>>> {
    let Some(chunks) = index.doc_chunks(id) else {
        return Ok(None);
    };
    let mut vectors = Vec::with_capacity(chunks.chunk_count as usize);
    for key in chunks.chunk_base..chunks.chunk_base + u64::from(chunks.chunk_count) {
        if let Some(vector) = index.chunk_vector(key)? {
            vectors.push(vector);
        }
    }
    let vector = match query_vector {
        Some(query) => vectors
            .into_iter()
            .max_by(|a, b| dot(a, query).total_cmp(&dot(b, query)))
            .map(|v| v.into_owned()),
        None => {
            let mut sum: Option<Vec<f32>> = None;
            for v in &vectors {
                match &mut sum {
                    Some(s) => s.iter_mut().zip(v.iter()).for_each(|(a, b)| *a += b),
                    None => sum = Some(v.to_vec()),
                }
            }
            sum.map(|mut mean| {
                let norm = dot(&mean, &mean).sqrt();
                if norm > 0.0 {
                    mean.iter_mut().for_each(|x| *x /= norm);
                }
                mean
            })
        }
    };
    Ok(vector)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Groups `ranked` (best first) by `value_of` each document, keeping the best `per_group` of
/// each; groups come in the order of their best hit.
pub(crate) fn group(
    ranked: &[DocScore],
    mut value_of: impl FnMut(&str) -> Option<Value>,
    per_group: usize,
) -> Vec<(Value, Vec<DocScore>)> {
    let mut groups: Vec<(Value, Vec<DocScore>)> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for doc in ranked {
        let value = value_of(&doc.id).unwrap_or(Value::Null);
        // Values are keyed by their JSON text: 2020 and "2020" are different groups, as their
        // types differ.
        let key = value.to_string();
        let at = *position.entry(key).or_insert_with(|| {
            groups.push((value, Vec::new()));
            groups.len() - 1
        });
        if groups[at].1.len() < per_group {
            groups[at].1.push(doc.clone());
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ranked(ids: &[&str]) -> Vec<DocScore> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| DocScore {
                id: id.to_string(),
                score: 1.0 - i as f32 / 10.0,
            })
            .collect()
    }

    #[test]
    fn groups_keep_the_best_per_group_in_order_of_their_best_hit() {
        let source = |id: &str| Some(json!(&id[..1]));
        let groups = group(&ranked(&["a1", "b1", "a2", "a3", "c1", "b2"]), source, 2);
        let ids: Vec<(Value, Vec<&str>)> = groups
            .iter()
            .map(|(v, docs)| (v.clone(), docs.iter().map(|d| d.id.as_str()).collect()))
            .collect();
        assert_eq!(
            ids,
            vec![
                (json!("a"), vec!["a1", "a2"]),
                (json!("b"), vec!["b1", "b2"]),
                (json!("c"), vec!["c1"]),
            ]
        );
    }

    #[test]
    fn documents_without_the_field_share_the_null_group_and_types_stay_apart() {
        let values: HashMap<&str, Value> = [("x", json!(2020)), ("y", json!("2020"))].into();
        let groups = group(
            &ranked(&["x", "y", "z", "w"]),
            |id| values.get(id).cloned(),
            5,
        );
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[2].0, Value::Null);
        assert_eq!(groups[2].1.len(), 2);
    }

    #[test]
    fn nested_fields_are_found_by_dotted_path() {
        let metadata = json!({"author": {"name": "Ada"}, "a.b": 1});
        let metadata = metadata.as_object().unwrap();
        assert_eq!(metadata_value(metadata, "author.name"), Some(&json!("Ada")));
        assert_eq!(metadata_value(metadata, "a.b"), Some(&json!(1)));
        assert_eq!(metadata_value(metadata, "author.age"), None);
    }
}
