//! The BM25 top k and the number of matches, in one pass that still prunes.
//!
//! tantivy's `TopDocs` ranks with block-max WAND: once k documents are held, blocks of postings
//! that cannot beat the k-th score are skipped unscored. Pairing it with the `Count` collector
//! (a tuple collector) turns that off: every match is scored to be counted. This collector
//! counts exactly up to [`EXACT_TOTAL_UP_TO`] matches per segment, as Lucene's
//! `totalHitsThreshold` and Elasticsearch's `track_total_hits` do, and only then starts pruning;
//! past the limit the count is a lower bound.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::Weight;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

/// Matches counted exactly, per segment, before the count becomes a lower bound.
pub const EXACT_TOTAL_UP_TO: usize = 10_000;

/// The best `k` documents by score and the number of matches.
pub(crate) struct TopAndCount {
    pub k: usize,
    pub count_up_to: usize,
}

/// What [`TopAndCount`] finds.
pub(crate) struct TopAndCountFruit {
    /// The best documents, best first (ties: lower address first).
    pub top: Vec<(Score, DocAddress)>,
    /// Matches counted.
    pub matches: usize,
    /// Whether `matches` is every match (no segment reached its limit).
    pub exact: bool,
}

/// A held document: ordered so that the heap's top is the worst one held.
#[derive(Clone, Copy)]
struct Held {
    score: Score,
    doc: DocId,
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        // Higher score is better; among equal scores the lower doc id is better. The heap keeps
        // its greatest element on top, so "greater" here means "worse".
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.doc.cmp(&other.doc))
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Held {}

/// One segment's collection.
pub(crate) struct SegmentTopAndCount {
    segment_ord: SegmentOrdinal,
    k: usize,
    count_up_to: usize,
    heap: BinaryHeap<Held>,
    matches: usize,
}

impl SegmentTopAndCount {
    /// Takes a match; returns the score a document must now exceed to matter: none while
    /// counting, the k-th best score once the count is done and k documents are held.
    fn take(&mut self, doc: DocId, score: Score) -> Score {
        if self.matches < self.count_up_to {
            self.matches += 1;
        }
        let held = Held { score, doc };
        if self.heap.len() < self.k {
            self.heap.push(held);
        } else if self.heap.peek().is_some_and(|worst| held < *worst) {
            self.heap.pop();
            self.heap.push(held);
        }
        if self.matches < self.count_up_to || self.heap.len() < self.k {
            Score::MIN
        } else {
            self.heap.peek().map_or(Score::MIN, |worst| worst.score)
        }
    }
}

impl SegmentCollector for SegmentTopAndCount {
    type Fruit = TopAndCountFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.take(doc, score);
    }

    fn harvest(self) -> TopAndCountFruit {
        let segment_ord = self.segment_ord;
        let exact = self.matches < self.count_up_to;
        let mut top: Vec<(Score, DocAddress)> = self
            .heap
            .into_sorted_vec()
            .into_iter()
            .map(|h| (h.score, DocAddress::new(segment_ord, h.doc)))
            .collect();
        top.truncate(self.k);
        TopAndCountFruit {
            top,
            matches: self.matches,
            exact,
        }
    }
}

impl Collector for TopAndCount {
    type Fruit = TopAndCountFruit;
    type Child = SegmentTopAndCount;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        _segment: &SegmentReader,
    ) -> tantivy::Result<SegmentTopAndCount> {
        Ok(SegmentTopAndCount {
            segment_ord,
            k: self.k.max(1),
            count_up_to: self.count_up_to,
            heap: BinaryHeap::new(),
            matches: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<TopAndCountFruit>) -> tantivy::Result<TopAndCountFruit> {
        let mut top: Vec<(Score, DocAddress)> = Vec::new();
        let mut matches = 0;
        let mut exact = true;
        for fruit in fruits {
            top.extend(fruit.top);
            matches += fruit.matches;
            exact &= fruit.exact;
        }
        top.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        top.truncate(self.k.max(1));
        Ok(TopAndCountFruit {
            top,
            matches,
            exact,
        })
    }

    /// One pass over the segment's matches: every one is scored until the count is done, then
    /// the scorer skips what cannot enter the top k (block-max WAND where the query allows it).
    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<TopAndCountFruit> {
        let mut segment = self.for_segment(segment_ord, reader)?;
        let alive = reader.alive_bitset();
        let mut threshold = Score::MIN;
        weight.for_each_pruning(Score::MIN, reader, &mut |doc, score| {
            if alive.is_some_and(|a| a.is_deleted(doc)) {
                return threshold;
            }
            threshold = segment.take(doc, score);
            threshold
        })?;
        Ok(segment.harvest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::collector::{Count, TopDocs};
    use tantivy::query::QueryParser;
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{doc, Index, Term};

    /// An index of `n` documents in `segments` segments, some deleted, whose texts repeat
    /// words at different rates so BM25 scores vary and tie.
    fn index(n: usize, segments: usize) -> (Index, tantivy::schema::Field) {
        let mut schema = Schema::builder();
        let text = schema.add_text_field("text", TEXT);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..n {
            let words = ["river"; 5][..1 + i % 5].join(" ");
            let extra = if i % 3 == 0 { " lake" } else { " stone" };
            writer
                .add_document(doc!(text => format!("{words}{extra} n{i}")))
                .unwrap();
            if (i + 1) % (n / segments).max(1) == 0 {
                writer.commit().unwrap();
            }
        }
        writer.delete_term(Term::from_field_text(text, "n7"));
        writer.commit().unwrap();
        (index, text)
    }

    #[test]
    fn the_top_k_is_tantivys_and_the_count_is_exact_up_to_the_limit() {
        let (index, text) = index(600, 3);
        let searcher = index.reader().unwrap().searcher();
        assert!(searcher.segment_readers().len() >= 2);
        let parser = QueryParser::for_index(&index, vec![text]);
        for query in ["river", "lake", "river lake", "stone river", "absent"] {
            let query = parser.parse_query(query).unwrap();
            let all = searcher.search(&query, &Count).unwrap();
            for k in [1, 10, 150, 1000] {
                let expected = searcher
                    .search(&query, &TopDocs::with_limit(k).order_by_score())
                    .unwrap();
                let found = searcher
                    .search(
                        &query,
                        &TopAndCount {
                            k,
                            count_up_to: 10_000,
                        },
                    )
                    .unwrap();
                let scores = |hits: &[(Score, DocAddress)]| -> Vec<Score> {
                    hits.iter().map(|h| h.0).collect()
                };
                assert_eq!(scores(&found.top), scores(&expected), "k={k}");
                assert_eq!((found.matches, found.exact), (all, true));
                // A limit below the matches: a lower bound, the same top k.
                let bounded = searcher
                    .search(&query, &TopAndCount { k, count_up_to: 50 })
                    .unwrap();
                assert_eq!(scores(&bounded.top), scores(&expected), "k={k}");
                if all > 150 {
                    assert!(!bounded.exact && bounded.matches >= 50 && bounded.matches <= all);
                }
                // No count at all: pruning from the first document, the same top k.
                let uncounted = searcher
                    .search(&query, &TopAndCount { k, count_up_to: 0 })
                    .unwrap();
                assert_eq!(scores(&uncounted.top), scores(&expected), "k={k}");
            }
        }
    }
}
