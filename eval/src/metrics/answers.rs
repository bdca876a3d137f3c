//! Answer matching as in SQuAD and NQ evaluation: lower case, punctuation and the articles
//! "a", "an", "the" removed, whitespace collapsed.

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

#[cfg(test)]
mod tests {
    use super::*;

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
