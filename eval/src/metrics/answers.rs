//! Answer matching as in SQuAD and NQ evaluation: lower case, punctuation and the articles
//! "a", "an", "the" removed, whitespace collapsed; exact match, token F1, and whether a text
//! contains an answer (what compression retention and lenient RAG scoring count).

use std::collections::HashMap;

/// Normalizes a text or an answer for matching.
pub fn normalize_answer(text: &str) -> String {
    let lowered = text.to_lowercase();
    let no_punctuation: String = lowered
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect();
    no_punctuation
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `text` contains one of `answers`, both normalized, on word boundaries.
pub fn contains_answer(text: &str, answers: &[String]) -> bool {
    let haystack = format!(" {} ", normalize_answer(text));
    answers
        .iter()
        .map(|a| normalize_answer(a))
        .filter(|a| !a.is_empty())
        .any(|a| haystack.contains(&format!(" {a} ")))
}

/// Token-level F1 of two normalized answers (SQuAD's definition).
pub fn token_f1(prediction: &str, gold: &str) -> f64 {
    let p: Vec<&str> = prediction.split_whitespace().collect();
    let g: Vec<&str> = gold.split_whitespace().collect();
    if p.is_empty() || g.is_empty() {
        return (p.is_empty() && g.is_empty()) as u8 as f64;
    }
    let mut counts: HashMap<&str, i32> = HashMap::new();
    for t in &g {
        *counts.entry(t).or_default() += 1;
    }
    let mut common = 0;
    for t in &p {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Defined beside the citation markers it drops.
pub use ibex_generator::prompt::answer_span;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_matches_squad() {
        assert!((token_f1("kingsford michigan", "kingsford") - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(token_f1("paris", "london"), 0.0);
        assert_eq!(token_f1("a b", "a b"), 1.0);
    }

    #[test]
    fn normalization_matches_squad() {
        assert_eq!(
            normalize_answer("The  Eiffel-Tower, Paris!"),
            "eiffel tower paris"
        );
        assert!(contains_answer(
            "It was built in 1889 by Gustave Eiffel.",
            &["1889".to_string()]
        ));
        assert!(!contains_answer(
            "It was built in 18890.",
            &["1889".to_string()]
        ));
        assert!(contains_answer(
            "Filmed on Oak Island, Nova Scotia",
            &["oak island".to_string()]
        ));
        assert!(!contains_answer(
            "anything",
            &["".to_string(), "the".to_string()]
        ));
    }
}
