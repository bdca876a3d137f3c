//! Output grammars: what a constrained generation may emit.
//!
//! The embedded model decodes under an [`OutputGrammar`]: at every step each vocabulary token is
//! kept only if its bytes can continue a valid output, and the end-of-message token only when the
//! output is complete. The grammar works on bytes because tokens of a byte-level BPE are byte
//! strings (a token may hold half of a UTF-8 character).
//!
//! [`ItemListGrammar`] is the recommender's: a list of distinct ids drawn from a candidate set,
//! one per line, optionally each followed by `: ` and a one-line reason. [`parse_item_list`] reads
//! the same format leniently from a model that was not constrained (an HTTP server) and counts
//! the errors RecAI reports.

use std::collections::HashSet;

/// A grammar over the bytes of a generated message.
pub trait OutputGrammar: Send + Sync {
    /// The state before anything was generated.
    fn start(&self) -> Box<dyn GrammarState>;
}

/// Where a constrained generation stands.
pub trait GrammarState: Send {
    /// Whether `bytes` can follow what was generated so far.
    fn allows(&self, bytes: &[u8]) -> bool;
    /// Moves past `bytes` (which [`allows`](Self::allows) accepted).
    fn advance(&mut self, bytes: &[u8]);
    /// Whether the output may end here.
    fn can_end(&self) -> bool;
    /// Whether the output is complete and admits nothing more (generation can stop without
    /// asking the model).
    fn is_finished(&self) -> bool {
        false
    }
}

/// A list of `count` distinct ids from `candidates`, one per line: `ID\n`, or with reasons
/// `ID: reason\n`.
#[derive(Debug, Clone)]
pub struct ItemListGrammar {
    candidates: Vec<Vec<u8>>,
    count: usize,
    with_reasons: bool,
    max_reason_bytes: usize,
}

impl ItemListGrammar {
    /// A list of `min(count, candidates)` distinct ids from `candidates` (duplicates in the
    /// candidate list are ignored). With `with_reasons` each id is followed by `: ` and a reason
    /// of at most `max_reason_bytes` bytes on the same line.
    pub fn new(
        candidates: &[String],
        count: usize,
        with_reasons: bool,
        max_reason_bytes: usize,
    ) -> Self {
        let mut seen = HashSet::new();
        let candidates: Vec<Vec<u8>> = candidates
            .iter()
            .filter(|c| !c.is_empty() && !c.contains(['\n', ':']) && seen.insert(c.as_str()))
            .map(|c| c.as_bytes().to_vec())
            .collect();
        ItemListGrammar {
            count: count.min(candidates.len()),
            candidates,
            with_reasons,
            max_reason_bytes: max_reason_bytes.max(1),
        }
    }

    /// The number of ids a complete output holds.
    pub fn count(&self) -> usize {
        self.count
    }
}

impl OutputGrammar for ItemListGrammar {
    fn start(&self) -> Box<dyn GrammarState> {
        Box::new(ItemListState {
            grammar: self.clone(),
            used: vec![false; self.candidates.len()],
            items: 0,
            phase: if self.count == 0 {
                Phase::Done
            } else {
                Phase::Id(Vec::new())
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Typing an id: the bytes so far.
    Id(Vec<u8>),
    /// After a complete id, matching `: ` (how many of its bytes were seen).
    Separator(usize),
    /// In a reason: its length so far.
    Reason(usize),
    /// The list is complete.
    Done,
}

#[derive(Debug, Clone)]
struct ItemListState {
    grammar: ItemListGrammar,
    used: Vec<bool>,
    items: usize,
    phase: Phase,
}

const SEPARATOR: &[u8] = b": ";

impl ItemListState {
    /// Whether some unused candidate starts with `typed`.
    fn is_prefix(&self, typed: &[u8]) -> bool {
        self.grammar
            .candidates
            .iter()
            .zip(&self.used)
            .any(|(c, used)| !used && c.starts_with(typed))
    }

    fn complete_id(&self, typed: &[u8]) -> Option<usize> {
        self.grammar
            .candidates
            .iter()
            .zip(&self.used)
            .position(|(c, used)| !used && c.as_slice() == typed)
    }

    fn finish_item(&mut self) {
        self.items += 1;
        self.phase = if self.items >= self.grammar.count {
            Phase::Done
        } else {
            Phase::Id(Vec::new())
        };
    }

    /// Advances by one byte; false when the byte is not allowed.
    fn step(&mut self, byte: u8) -> bool {
        match &mut self.phase {
            Phase::Done => false,
            Phase::Id(typed) => {
                let terminator = if self.grammar.with_reasons {
                    SEPARATOR[0]
                } else {
                    b'\n'
                };
                let mut extended = typed.clone();
                extended.push(byte);
                if self.is_prefix(&extended) {
                    self.phase = Phase::Id(extended);
                    return true;
                }
                let typed = extended[..extended.len() - 1].to_vec();
                if byte != terminator {
                    return false;
                }
                let Some(index) = self.complete_id(&typed) else {
                    return false;
                };
                self.used[index] = true;
                if self.grammar.with_reasons {
                    self.phase = Phase::Separator(1);
                } else {
                    self.finish_item();
                }
                true
            }
            Phase::Separator(seen) => {
                if *seen < SEPARATOR.len() {
                    if byte != SEPARATOR[*seen] {
                        return false;
                    }
                    *seen += 1;
                    if *seen == SEPARATOR.len() {
                        self.phase = Phase::Reason(0);
                    }
                    true
                } else {
                    false
                }
            }
            Phase::Reason(length) => {
                if byte == b'\n' {
                    if *length == 0 {
                        return false;
                    }
                    self.finish_item();
                    true
                } else if *length >= self.grammar.max_reason_bytes || byte == b'\r' {
                    false
                } else {
                    // A reason starts with a visible character.
                    if *length == 0 && byte.is_ascii_whitespace() {
                        return false;
                    }
                    *length += 1;
                    true
                }
            }
        }
    }
}

impl GrammarState for ItemListState {
    fn allows(&self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        // Fast paths for the two common cases, without copying the state: inside a reason most
        // tokens are plain text; while typing an id most tokens fail on their first byte.
        match &self.phase {
            Phase::Done => return false,
            Phase::Reason(length)
                if *length > 0
                    && !bytes.contains(&b'\n')
                    && !bytes.contains(&b'\r')
                    && length + bytes.len() <= self.grammar.max_reason_bytes =>
            {
                return true;
            }
            Phase::Id(typed) => {
                let first = bytes[0];
                let extends = self
                    .grammar
                    .candidates
                    .iter()
                    .zip(&self.used)
                    .any(|(c, used)| {
                        !used && c.starts_with(typed) && c.get(typed.len()) == Some(&first)
                    });
                let terminator = if self.grammar.with_reasons {
                    SEPARATOR[0]
                } else {
                    b'\n'
                };
                if !(extends || first == terminator && self.complete_id(typed).is_some()) {
                    return false;
                }
            }
            _ => {}
        }
        let mut probe = self.clone();
        bytes.iter().all(|&b| probe.step(b))
    }

    fn advance(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if !self.step(b) {
                break;
            }
        }
    }

    fn can_end(&self) -> bool {
        self.phase == Phase::Done
    }

    fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }
}

/// One item of a parsed list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedItem {
    /// The item's id, as the model wrote it.
    pub id: String,
    /// The model's reason for it, when it gave one.
    pub reason: Option<String>,
}

/// An item list read from free text, with RecAI's error counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedItemList {
    /// The valid items, in order: candidates, distinct, not in the history.
    pub items: Vec<ListedItem>,
    /// Lines naming an item that is not a candidate.
    pub candidate_errors: usize,
    /// Lines repeating an item already listed.
    pub duplicates: usize,
    /// Lines naming an item of the user's history.
    pub history_repeats: usize,
    /// Non-empty lines with no id at all.
    pub unparseable_lines: usize,
}

impl ParsedItemList {
    /// Whether the text was a clean list: no errors of any kind and at least one item.
    pub fn is_clean(&self) -> bool {
        !self.items.is_empty()
            && self.candidate_errors == 0
            && self.duplicates == 0
            && self.history_repeats == 0
            && self.unparseable_lines == 0
    }
}

/// Reads an item list from free text: one item per line, list markers (`1.`, `-`, `*`) and
/// brackets tolerated, `ID` or `ID: reason`.
pub fn parse_item_list(text: &str, candidates: &[String], history: &[String]) -> ParsedItemList {
    let candidates: HashSet<&str> = candidates.iter().map(String::as_str).collect();
    let history: HashSet<&str> = history.iter().map(String::as_str).collect();
    let mut listed = HashSet::new();
    let mut parsed = ParsedItemList::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // An id may itself look like a list marker ("-a9"): take the line as is when its id is
        // a known item, and strip markers only otherwise.
        let raw_id = line.split_once(':').map_or(line, |(id, _)| id).trim();
        let known = |id: &str| candidates.contains(id) || history.contains(id);
        let line = if known(raw_id) {
            line
        } else {
            strip_list_marker(line)
        };
        let (id, reason) = match line.split_once(':') {
            Some((id, reason)) => (id, Some(reason.trim().to_string())),
            None => (line, None),
        };
        let id = id
            .trim()
            .trim_matches(|c: char| matches!(c, '[' | ']' | '(' | ')' | '"' | '\'' | '*' | '`'));
        if id.is_empty() || id.contains(char::is_whitespace) && !candidates.contains(id) {
            parsed.unparseable_lines += 1;
        } else if history.contains(id) {
            parsed.history_repeats += 1;
        } else if !candidates.contains(id) {
            parsed.candidate_errors += 1;
        } else if !listed.insert(id.to_string()) {
            parsed.duplicates += 1;
        } else {
            parsed.items.push(ListedItem {
                id: id.to_string(),
                reason: reason.filter(|r| !r.is_empty()),
            });
        }
    }
    parsed
}

fn strip_list_marker(line: &str) -> &str {
    let trimmed = line.trim_start_matches(['-', '*', '•']).trim_start();
    if trimmed.len() != line.len() {
        return trimmed;
    }
    // "3." or "3)" followed by a space: a numbered list, not an id.
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    let rest = &line[digits..];
    if digits > 0 && (rest.starts_with(". ") || rest.starts_with(") ")) {
        return rest[2..].trim_start();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn feed(state: &mut dyn GrammarState, text: &str) -> bool {
        for b in text.bytes() {
            if !state.allows(&[b]) {
                return false;
            }
            state.advance(&[b]);
        }
        true
    }

    #[test]
    fn accepts_exactly_distinct_candidates() {
        let grammar = ItemListGrammar::new(&ids(&["12", "123", "7"]), 2, false, 80);
        let mut s = grammar.start();
        assert!(!s.can_end());
        assert!(feed(s.as_mut(), "123\n12\n"));
        assert!(s.can_end());
        assert!(!s.allows(b"7"), "the list is complete");

        let mut s = grammar.start();
        assert!(feed(s.as_mut(), "12\n"));
        assert!(!s.allows(b"12\n"), "a duplicate is refused");
        assert!(
            s.allows(b"123\n"),
            "an id that extends a used one is still a candidate"
        );
        assert!(!s.allows(b"8"));
        assert!(!s.allows(b" 7"), "no leading space");
    }

    #[test]
    fn reasons_follow_ids_on_one_line() {
        let grammar = ItemListGrammar::new(&ids(&["a1", "b2"]), 2, true, 10);
        let mut s = grammar.start();
        assert!(!s.allows(b"a1\n"), "a reason is required");
        assert!(!s.allows(b"a1: \n"), "an empty reason is refused");
        assert!(feed(s.as_mut(), "a1: fun\n"));
        assert!(!s.allows(b"b2: this reason is too long\n"));
        assert!(feed(s.as_mut(), "b2: ok\n"));
        assert!(s.can_end());
    }

    #[test]
    fn count_is_capped_by_the_candidates() {
        let grammar = ItemListGrammar::new(&ids(&["x", "x", "y"]), 10, false, 10);
        assert_eq!(grammar.count(), 2);
        let empty = ItemListGrammar::new(&[], 3, false, 10);
        assert!(empty.start().can_end());
    }

    #[test]
    fn parse_counts_recai_errors() {
        let text =
            "1. 50: a classic\n- 50: again\n* 999\n172\nsomething else entirely\n\n[181]: ok";
        let parsed = parse_item_list(text, &ids(&["50", "181", "172"]), &ids(&["172"]));
        let listed: Vec<&str> = parsed.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(listed, ["50", "181"]);
        assert_eq!(parsed.items[0].reason.as_deref(), Some("a classic"));
        assert_eq!(parsed.duplicates, 1);
        assert_eq!(parsed.candidate_errors, 1);
        assert_eq!(parsed.history_repeats, 1);
        assert_eq!(parsed.unparseable_lines, 1);
        assert!(!parsed.is_clean());
    }
}
