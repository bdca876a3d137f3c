//! Sentence segmentation.
//!
//! Built on Unicode's sentence boundaries (UAX #29, from the unicode-segmentation crate), which
//! already keep decimals ("3.14"), URLs and domain names ("example.com/a.b") whole and know
//! non-English sentence ends ("。", "！", "؟"). On top of it, rules for what UAX #29 gets wrong in
//! practice: it ends a sentence after abbreviations and initials ("Dr. Smith", "J. R. R. Tolkien",
//! "e.g. this"), and leaves list markers ("1.", "-") as sentences of their own.

use unicode_segmentation::UnicodeSegmentation;

/// A sentence's span in its text, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceSpan {
    /// Character offset of the sentence's first character.
    pub start: usize,
    /// One past its last character (trailing whitespace excluded).
    pub end: usize,
}

/// Abbreviations after which a period does not end a sentence (compared in lower case).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "cf", "al",
    "inc", "ltd", "co", "corp", "no", "nos", "vol", "fig", "figs", "approx", "dept", "est", "gen",
    "gov", "sen", "rep", "lt", "col", "capt", "sgt", "jan", "feb", "mar", "apr", "jun", "jul",
    "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "u.n", "a.m", "p.m", "ca", "op",
];

/// Whether `segment` (a UAX #29 sentence, trailing space trimmed) ends with something that is not
/// a sentence end: an abbreviation, an initial, or a bare list marker.
fn ends_without_sentence_end(segment: &str) -> bool {
    let trimmed = segment.trim_end();
    let Some(before_period) = trimmed.strip_suffix('.') else {
        return false;
    };
    let last_word = before_period
        .rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"')
        .next()
        .unwrap_or("");
    if last_word.is_empty() {
        return false;
    }
    let lower = last_word.to_lowercase();
    // A single letter ("J.") is an initial; a number alone ("1.") is a list marker.
    let is_initial = last_word.chars().count() == 1 && last_word.chars().all(char::is_alphabetic);
    let is_list_marker = trimmed.chars().filter(|c| !c.is_whitespace()).count() <= 4
        && last_word.chars().all(|c| c.is_ascii_digit());
    ABBREVIATIONS.contains(&lower.as_str()) || is_initial || is_list_marker
}

/// Splits `text` into sentences (character offsets, whitespace trimmed off each end; empty
/// sentences dropped).
pub fn split_sentences(text: &str) -> Vec<SentenceSpan> {
    // Byte offsets of UAX #29 segments, merged where a rule says the sentence goes on.
    let mut merged: Vec<(usize, usize)> = Vec::new();
    let mut carry = false;
    for (start, segment) in text.split_sentence_bound_indices() {
        let end = start + segment.len();
        match merged.last_mut() {
            Some(last) if carry => last.1 = end,
            _ => merged.push((start, end)),
        }
        // A line break ends a sentence whatever came before it (lists, headings).
        let (s, e) = *merged.last().unwrap_or(&(start, end));
        let current = &text[s..e];
        // UAX #29 also breaks inside tokens with no space after the terminator ("a.b?c=1" in a
        // URL): a sentence ends only before white space, except after CJK terminators, which
        // take none.
        let glued =
            !segment.ends_with(char::is_whitespace) && !segment.ends_with(['。', '！', '？', '．']);
        carry = !segment.contains('\n') && (glued || ends_without_sentence_end(current));
        // Bullets ("- ", "* ") alone are joined to what follows.
        if matches!(current.trim(), "-" | "*" | "•") {
            carry = true;
        }
    }
    // Convert to character offsets, trimming whitespace.
    let mut char_index = 0usize;
    let mut byte_to_char = Vec::with_capacity(text.len() + 1);
    for (byte, _) in text.char_indices() {
        while byte_to_char.len() <= byte {
            byte_to_char.push(char_index);
        }
        char_index += 1;
    }
    while byte_to_char.len() <= text.len() {
        byte_to_char.push(char_index);
    }
    merged
        .into_iter()
        .filter_map(|(s, e)| {
            let piece = &text[s..e];
            let leading = piece.len() - piece.trim_start().len();
            let trailing = piece.len() - piece.trim_end().len();
            let (s, e) = (s + leading, e - trailing);
            (e > s).then(|| SentenceSpan {
                start: byte_to_char[s],
                end: byte_to_char[e],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentences(text: &str) -> Vec<String> {
        split_sentences(text)
            .iter()
            .map(|s| text.chars().skip(s.start).take(s.end - s.start).collect())
            .collect()
    }

    #[test]
    fn plain_sentences() {
        assert_eq!(
            sentences("It rains. The sun shines!  Does it? Yes."),
            ["It rains.", "The sun shines!", "Does it?", "Yes."]
        );
    }

    #[test]
    fn abbreviations_and_initials_do_not_end_sentences() {
        assert_eq!(
            sentences("Dr. Smith met J. R. R. Tolkien in Oxford. They talked."),
            ["Dr. Smith met J. R. R. Tolkien in Oxford.", "They talked."]
        );
        assert_eq!(
            sentences("Bring fruit, e.g. apples. Or not."),
            ["Bring fruit, e.g. apples.", "Or not."]
        );
        assert_eq!(
            sentences("It grew in the U.S. Economy slowed."),
            ["It grew in the U.S. Economy slowed."]
        );
    }

    #[test]
    fn decimals_and_urls_stay_whole() {
        assert_eq!(
            sentences("Pi is about 3.14159 here. See https://example.com/a.b?c=1. Done."),
            [
                "Pi is about 3.14159 here.",
                "See https://example.com/a.b?c=1.",
                "Done."
            ]
        );
    }

    #[test]
    fn lists_split_by_item() {
        assert_eq!(
            sentences("Steps:\n1. Mix flour\n2. Add water\n- Bake it"),
            ["Steps:", "1. Mix flour", "2. Add water", "- Bake it"]
        );
    }

    #[test]
    fn non_english_punctuation() {
        assert_eq!(
            sentences("今日は晴れです。明日は雨です。"),
            ["今日は晴れです。", "明日は雨です。"]
        );
        assert_eq!(
            sentences("¿Qué hora es? Son las tres."),
            ["¿Qué hora es?", "Son las tres."]
        );
    }

    #[test]
    fn offsets_are_characters_and_empty_input_is_empty() {
        let text = "Ünïcödé first. Second é.";
        let spans = split_sentences(text);
        assert_eq!(spans[1], SentenceSpan { start: 15, end: 24 });
        assert!(split_sentences("").is_empty());
        assert!(split_sentences("   \n  ").is_empty());
    }
}
