//! Every measure ibex reports, in one place: retrieval ([`retrieval`], trec_eval's definitions),
//! answers ([`answers`], SQuAD's normalization, exact match, token F1, containment) and
//! recommendation ([`top_n`], leave-one-out HR@10 and NDCG@10).

pub mod answers;
pub mod retrieval;
pub mod top_n;

pub use answers::{answer_span, contains_answer, normalize_answer, token_f1};
pub use retrieval::{evaluate, mean, trec_order, Judgments, Measures};
pub use top_n::{RankingFigures, TopNTally};
