//! Prompts: RAG answers with numbered passages and checked citations, and recommendation lists.
//!
//! Passages are numbered `[1]`, `[2]`, ... in the order given; an answer cites them with the same
//! markers. [`check_citations`] keeps only citations of passages that were actually in the
//! context: a number the model invented is removed from the answer and reported, never passed on.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::ChatMessage;

/// A passage of the context, as the prompt shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextPassage {
    /// Title of its document (may be empty).
    pub title: String,
    /// The passage's text (the kept sentences, when compressed).
    pub text: String,
}

/// How long an answer should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerStyle {
    /// A sentence or two with citations: what `ibex ask` shows a person.
    Sentences,
    /// A short phrase (the answer span) with its citation: what exact-match evaluation scores.
    ShortPhrase,
}

const RAG_SYSTEM: &str = "You answer questions using only the numbered passages you are given. \
End each sentence with the number of the passage it comes from in square brackets, for example: \
\"Water boils at 100 degrees Celsius at sea level [2].\" \
If the passages do not contain the answer, say that you do not know.";

/// The chat of a RAG question over `passages` (numbered from 1 in this order).
pub fn rag_messages(
    question: &str,
    passages: &[ContextPassage],
    style: AnswerStyle,
) -> Vec<ChatMessage> {
    let mut context = String::new();
    for (i, p) in passages.iter().enumerate() {
        let text = p.text.trim();
        if p.title.trim().is_empty() {
            context.push_str(&format!("[{}] {text}\n", i + 1));
        } else {
            context.push_str(&format!("[{}] {}: {text}\n", i + 1, p.title.trim()));
        }
    }
    if passages.is_empty() {
        context.push_str("(no passages were found)\n");
    }
    let instruction = match style {
        AnswerStyle::Sentences => "Answer in one or two sentences and cite the passages you used.",
        AnswerStyle::ShortPhrase => {
            "Answer with a short phrase only (a name, date, number or a few words), then the passage number in brackets."
        }
    };
    vec![
        ChatMessage::system(RAG_SYSTEM),
        ChatMessage::user(format!(
            "Passages:\n{context}\nQuestion: {}\n{instruction}",
            question.trim()
        )),
    ]
}

/// The citations of an answer, checked against the context.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CitationCheck {
    /// The answer with every invalid citation marker removed.
    pub text: String,
    /// Cited passage numbers (1-based) that exist in the context, ascending.
    pub cited: Vec<usize>,
    /// Cited numbers that do not exist in the context (removed from `text`), ascending.
    pub invalid: Vec<usize>,
}

/// Finds the citation markers of `answer` (`[3]`, `[1, 2]`, `[1][2]`) and keeps those naming one
/// of `passages` passages; invalid numbers are removed from the text and reported.
pub fn check_citations(answer: &str, passages: usize) -> CitationCheck {
    let mut cited = BTreeSet::new();
    let mut invalid = BTreeSet::new();
    let mut text = String::with_capacity(answer.len());
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            text.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inside = &after[..close];
        let numbers: Option<Vec<usize>> = inside
            .split(',')
            .map(|n| n.trim().parse::<usize>().ok())
            .collect();
        match numbers {
            Some(numbers) if !numbers.is_empty() => {
                let valid: Vec<usize> = numbers
                    .into_iter()
                    .filter(|&n| {
                        let ok = (1..=passages).contains(&n);
                        if ok {
                            cited.insert(n);
                        } else {
                            invalid.insert(n);
                        }
                        ok
                    })
                    .collect();
                if !valid.is_empty() {
                    let list: Vec<String> = valid.iter().map(usize::to_string).collect();
                    text.push_str(&format!("[{}]", list.join(", ")));
                }
            }
            // Not a citation ("[sic]", "[a]"): text.
            _ => text.push_str(&rest[open..open + 1 + close + 1]),
        }
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    // Removing a marker can leave a double space or a space before punctuation.
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if (c == ' ' && cleaned.ends_with(' '))
            || (matches!(c, '.' | ',') && cleaned.ends_with(' ') && !cleaned.trim().is_empty())
        {
            if c != ' ' {
                cleaned.pop();
                cleaned.push(c);
            }
            continue;
        }
        cleaned.push(c);
    }
    CitationCheck {
        text: cleaned.trim().to_string(),
        cited: cited.into_iter().collect(),
        invalid: invalid.into_iter().collect(),
    }
}

/// The answer of a generation without its citation markers and anything after its first line
/// (models asked for a short answer often add an explanation below it).
pub fn answer_span(text: &str) -> String {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut out = String::new();
    let mut depth = 0;
    for c in first.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// An item as a recommendation prompt shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptItem {
    /// The item's id, which the model must answer with.
    pub id: String,
    /// What the model is shown of it (title and the start of its text).
    pub description: String,
}

/// The chat asking for `count` of `candidates` for a user with `history` (oldest first),
/// with an optional wish in the user's words. With `with_reasons` each line is `ID: reason`.
pub fn recommendation_messages(
    history: &[PromptItem],
    candidates: &[PromptItem],
    count: usize,
    wish: Option<&str>,
    with_reasons: bool,
) -> Vec<ChatMessage> {
    let mut prompt = String::from("The user's recent items (most recent last):\n");
    for item in history {
        prompt.push_str(&format!("- {}\n", item.description));
    }
    if let Some(wish) = wish.map(str::trim).filter(|w| !w.is_empty()) {
        prompt.push_str(&format!("The user asks for: {wish}\n"));
    }
    prompt.push_str("\nCandidates (ID: item):\n");
    for item in candidates {
        prompt.push_str(&format!("{}: {}\n", item.id, item.description));
    }
    let format = if with_reasons {
        "one per line as `ID: a one-sentence reason`"
    } else {
        "one ID per line"
    };
    prompt.push_str(&format!(
        "\nRecommend the {count} candidates this user will most likely enjoy next, best first, {format}. Use only IDs from the candidate list."
    ));
    vec![
        ChatMessage::system(
            "You are a recommender system. You only recommend items from the candidate list.",
        ),
        ChatMessage::user(prompt),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_span_drops_citations_and_later_lines() {
        assert_eq!(
            answer_span("Kingsford, Michigan [2]\nBecause..."),
            "Kingsford, Michigan"
        );
        assert_eq!(answer_span("\n[1] Paris"), "Paris");
    }

    #[test]
    fn invalid_citations_are_removed_and_reported() {
        let check = check_citations("Paris is the capital [1][7]. It is large [2, 9] [sic].", 3);
        assert_eq!(check.cited, [1, 2]);
        assert_eq!(check.invalid, [7, 9]);
        assert_eq!(
            check.text,
            "Paris is the capital [1]. It is large [2] [sic]."
        );
        let none = check_citations("No idea [0].", 2);
        assert_eq!(none.invalid, [0]);
        assert_eq!(none.text, "No idea.");
        assert!(check_citations("[", 1).cited.is_empty());
    }

    #[test]
    fn rag_prompt_numbers_passages_in_order() {
        let passages = [
            ContextPassage {
                title: "A".into(),
                text: "first".into(),
            },
            ContextPassage {
                title: String::new(),
                text: "second".into(),
            },
        ];
        let messages = rag_messages("q?", &passages, AnswerStyle::Sentences);
        let user = &messages[1].content;
        assert!(user.contains("[1] A: first\n[2] second\n"), "{user}");
        assert!(user.contains("Question: q?"));
    }
}
