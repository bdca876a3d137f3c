//! Whether an answer's content comes from the context it was given.
//!
//! A small model asked about a corpus that does not hold the answer still answers, and what it
//! invents reads like what it copied: on an index of scientific abstracts, SmolLM2 answered a
//! question on vitamin D with a study "by the University of California" and a "50mg" dose that no
//! passage contains. The rule here is the one a reader checks first: **every number and every
//! name in the answer must appear in the context (or the question)**. Numbers are digit runs
//! (`1,200` and `1200` are the same number); names are capitalized words not at the start of a
//! sentence, and all-capital words anywhere (acronyms). A name counts as present when its stem
//! (the BM25 analyzer's: "Michigan's" is "michigan") is among the context's. An answer claiming
//! neither (a yes or no, "the passages do not say") is supported by this rule.
//!
//! It is a check of grounding, not of truth: a name copied from a distractor passage passes, and
//! a correct paraphrase whose numbers are spelled differently ("five" for "5") is flagged. What it
//! catches and misses on NQ-open is measured by `ibex eval-rag` (EVALUATION.md).

use std::collections::HashSet;

use ibex_indexer::english_analyzer;
use serde::Serialize;

/// The verdict of [`check_support`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Support {
    /// True when every number and name of the answer appears in the context or the question.
    pub supported: bool,
    /// The answer's numbers and names that do not, as the answer wrote them, in order.
    pub unsupported: Vec<String>,
    /// Why the answer is not supported, for the user (absent when it is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Support {
    fn of(unsupported: Vec<String>) -> Support {
        let reason = (!unsupported.is_empty()).then(|| {
            format!(
                "no passage in the context contains {}: the answer may be made up",
                unsupported
                    .iter()
                    .map(|t| format!("\"{t}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        Support {
            supported: unsupported.is_empty(),
            unsupported,
            reason,
        }
    }
}

/// Checks `answer` against the texts it was given: the context passages (and their titles) and
/// the question. `cut_short`: generation stopped at its token limit (so the answer's last word
/// may be a fragment).
pub fn check_support<'a>(
    answer: &str,
    cut_short: bool,
    question: &str,
    context: impl IntoIterator<Item = &'a str>,
) -> Support {
    // The BM25 analyzer's terms (lower-cased, stemmed, stop words dropped), one analyzer for
    // the whole check.
    let mut analyzer = english_analyzer();
    let mut add_stems = |text: &str, terms: &mut HashSet<String>| {
        let mut stream = analyzer.token_stream(text);
        while let Some(token) = stream.next() {
            terms.insert(token.text.clone());
        }
    };
    let mut known_numbers: HashSet<String> = numbers(question).into_iter().collect();
    let mut known_stems: HashSet<String> = HashSet::new();
    add_stems(question, &mut known_stems);
    for text in context {
        known_numbers.extend(numbers(text));
        add_stems(text, &mut known_stems);
    }
    let answer = without_citation_markers(answer);
    let mut unsupported: Vec<String> = Vec::new();
    for claim in claims(&answer, cut_short) {
        let present = match &claim {
            Claim::Number(number) => known_numbers.contains(number),
            Claim::Name(name) => {
                let mut name_stems = HashSet::new();
                add_stems(name, &mut name_stems);
                // A stop word alone ("The", "I") names nothing.
                name_stems.is_empty() || name_stems.iter().all(|s| known_stems.contains(s))
            }
        };
        let surface = match claim {
            Claim::Number(number) | Claim::Name(number) => number,
        };
        if !present && !unsupported.contains(&surface) {
            unsupported.push(surface);
        }
    }
    Support::of(unsupported)
}

/// Something an answer asserts that its context must hold.
enum Claim {
    /// A number, normalized (digit groups joined: `1,200` is `1200`).
    Number(String),
    /// A name as written.
    Name(String),
}

/// The numbers and names of `text`, in order. When the text was cut short (`cut_short`: the
/// LLM hit its token limit) a last word not followed by anything may be a fragment
/// ("Komb" of "Kombat") and claims nothing.
fn claims(text: &str, cut_short: bool) -> Vec<Claim> {
    let fragment_from = if cut_short && text.ends_with(char::is_alphanumeric) {
        words(text).last().map_or(text.len(), |(start, _)| start)
    } else {
        text.len()
    };
    let mut found: Vec<Claim> = numbers_at(text)
        .into_iter()
        .filter(|&(start, end, _)| start < fragment_from && !is_list_marker(text, start, end))
        .map(|(_, _, number)| Claim::Number(number))
        .collect();
    for (start, word) in words(text) {
        if start >= fragment_from || word.chars().any(|c| c.is_ascii_digit()) {
            continue;
        }
        let mut letters = word.chars();
        let capitalized = letters.next().is_some_and(char::is_uppercase);
        let acronym =
            word.chars().count() >= 2 && word.chars().all(|c| c.is_uppercase() || c.is_numeric());
        if acronym || (capitalized && !starts_a_sentence(text, start)) {
            found.push(Claim::Name(word.to_string()));
        }
    }
    found
}

/// The words of `text` (runs of alphanumeric characters) with their byte offsets.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = rest.find(|(_, c)| c.is_alphanumeric())?;
        let mut end = text.len();
        while let Some(&(at, c)) = rest.peek() {
            if !c.is_alphanumeric() {
                end = at;
                break;
            }
            rest.next();
        }
        Some((start, &text[start..end]))
    })
}

/// Whether the word at byte `start` of `text` opens a sentence (so its capital says nothing).
fn starts_a_sentence(text: &str, start: usize) -> bool {
    let before =
        text[..start].trim_end_matches(|c: char| c.is_whitespace() || "\"'“‘([*-".contains(c));
    before.is_empty() || before.ends_with(['.', '!', '?', ':', ';', '\n'])
}

/// The numbers of `text`: digit runs, with `,` or `.` between digits kept inside one number
/// (thousands separators dropped, a decimal point kept).
fn numbers(text: &str) -> Vec<String> {
    numbers_at(text).into_iter().map(|(_, _, n)| n).collect()
}

/// [`numbers`] with each number's byte range in `text`.
fn numbers_at(text: &str) -> Vec<(usize, usize, String)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let digit_at = |i: usize| chars.get(i).is_some_and(|(_, c)| c.is_ascii_digit());
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !digit_at(i) {
            i += 1;
            continue;
        }
        let start = chars[i].0;
        let mut number = String::new();
        while i < chars.len() {
            let c = chars[i].1;
            if c.is_ascii_digit() {
                number.push(c);
            } else if (c == ',' || c == '.') && digit_at(i + 1) {
                if c == '.' {
                    number.push('.');
                }
            } else {
                break;
            }
            i += 1;
        }
        let end = chars.get(i).map_or(text.len(), |(at, _)| *at);
        found.push((start, end, number));
    }
    found
}

/// Whether the number at `start..end` of `text` numbers a list item ("1." or "2)" opening a
/// line): a small model often answers as a list, and the numbering claims nothing.
fn is_list_marker(text: &str, start: usize, end: usize) -> bool {
    let opens_line = text[..start]
        .trim_end_matches([' ', '\t'])
        .chars()
        .next_back()
        .is_none_or(|c| c == '\n');
    let mut after = text[end..].chars();
    opens_line
        && matches!(after.next(), Some('.' | ')'))
        && after.next().is_none_or(char::is_whitespace)
}

/// `text` without `[n]` / `[n, m]` citation markers (their numbers are not claims).
fn without_citation_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close)
                if close > 0
                    && after[..close]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ') =>
            {
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "Vitamin D deficiency (VDD) is very common in all age groups. \
        A trial in 2,686 adults gave 100,000 IU every four months; fractures fell by 22%.";

    #[test]
    fn invented_names_and_numbers_are_flagged() {
        let support = check_support(
            "Yes. A study by the University of California found that 50mg a day reduced \
             fractures [1].",
            false,
            "Does vitamin D supplementation reduce the risk of fractures?",
            [CONTEXT],
        );
        assert!(!support.supported);
        assert_eq!(support.unsupported, ["50", "University", "California"]);
        let reason = support.reason.unwrap();
        assert!(
            reason.contains("\"University\"") && reason.contains("\"50\""),
            "{reason}"
        );
    }

    #[test]
    fn an_answer_drawn_from_the_context_is_supported() {
        let support = check_support(
            "Yes: in a trial of 2686 adults, 100,000 IU of Vitamin D every four months cut \
             fractures by 22% [1]. VDD is common.",
            false,
            "Does vitamin D reduce fractures?",
            [CONTEXT],
        );
        assert_eq!(support.unsupported, Vec::<String>::new());
        assert!(support.supported && support.reason.is_none());
    }

    #[test]
    fn sentence_starts_stop_words_and_citation_numbers_claim_nothing() {
        let support = check_support(
            "The passages do not say. However, \"Fractures\" fell [2, 3]. I think so.",
            false,
            "What fell?",
            ["fractures fell"],
        );
        assert!(support.supported, "{support:?}");
    }

    #[test]
    fn names_match_by_stem_and_the_question_counts_as_context() {
        let support = check_support(
            "They come from Michigan's Kingsford, says the Lagina family.",
            false,
            "Where are the Lagina brothers from?",
            ["Kingsford, Michigan is a city."],
        );
        assert!(support.supported, "{support:?}");
        let no_context = check_support("It was Kingsford.", false, "Where?", []);
        assert_eq!(no_context.unsupported, ["Kingsford"]);
    }

    #[test]
    fn list_numbering_and_a_fragment_cut_by_the_token_limit_claim_nothing() {
        let context = ["Orange Juice released Rip It Up in 1983."];
        let listed = "1. Rip It Up was a 1983 single.\n2) By Orange Juice.\n 3. Then Mortal Komb";
        let cut = check_support(listed, true, "Who sang Rip It Up?", context);
        assert_eq!(cut.unsupported, ["Mortal"], "{cut:?}");
        // Not cut short: the last word is whole, and a claim.
        let whole = check_support(listed, false, "Who sang Rip It Up?", context);
        assert_eq!(whole.unsupported, ["Mortal", "Komb"]);
        // A number inside a sentence is a claim even when a period follows it.
        let year = check_support("It came out in 1984.", false, "When?", context);
        assert_eq!(year.unsupported, ["1984"]);
    }

    #[test]
    fn numbers_join_digit_groups_and_keep_decimals() {
        assert_eq!(
            numbers("1,200 and 3.5, then 7. Done 2024."),
            ["1200", "3.5", "7", "2024"]
        );
        assert_eq!(
            without_citation_markers("a [1] b [x] c [2, 3]."),
            "a  b [x] c ."
        );
    }
}
