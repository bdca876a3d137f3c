//! Prefill and decode speed of the embedded LLM, for `bench/llm_speed.sh`:
//! `llm_speed [GGUF [USER_MESSAGE_FILE [MAX_TOKENS]]]` prints one JSON line (the second of two
//! rounds). Thread count: `RAYON_NUM_THREADS` (the pool the embedded model runs on).
use std::time::Instant;

use ibex_generator::{ChatMessage, EmbeddedGenerator, GenerationRequest, Generator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let generator = match args.first().filter(|a| !a.is_empty()) {
        Some(path) => EmbeddedGenerator::load(std::path::Path::new(path))?,
        None => EmbeddedGenerator::load_default()?,
    };
    let message = match args.get(1) {
        Some(path) => std::fs::read_to_string(path)?,
        None => {
            "Write a long story about a lighthouse keeper who finds a message in a bottle.".into()
        }
    };
    let mut request = GenerationRequest::new(vec![ChatMessage::user(message)]);
    request.max_tokens = args.get(2).map(|n| n.parse()).transpose()?.unwrap_or(64);
    let mut last = String::new();
    for _ in 0..2 {
        let start = Instant::now();
        let mut first = None;
        let completion = generator.generate(&request, &mut |_| {
            first.get_or_insert_with(|| start.elapsed());
        })?;
        let total = start.elapsed();
        let first = first.unwrap_or(total);
        last = serde_json::json!({
            "prompt_tokens": completion.prompt_tokens,
            "prefill_s": first.as_secs_f64(),
            "decode_tokens": completion.completion_tokens.saturating_sub(1),
            "decode_s": (total - first).as_secs_f64(),
        })
        .to_string();
    }
    println!("{last}");
    Ok(())
}
