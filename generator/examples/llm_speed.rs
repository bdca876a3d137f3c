//! Prefill and decode speed of the embedded LLM: `cargo run --release -p ibex-generator --example llm_speed [GGUF]`.
//! Run it with `CANDLE_NUM_THREADS=1` and `=2` to compare thread counts.
use std::time::Instant;

use ibex_generator::{ChatMessage, EmbeddedGenerator, GenerationRequest, Generator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let generator = match std::env::args().nth(1) {
        Some(path) => EmbeddedGenerator::load(std::path::Path::new(&path))?,
        None => EmbeddedGenerator::load_default()?,
    };
    let passage = "The Curse of Oak Island follows brothers Marty and Rick Lagina, originally from Kingsford, Michigan, through their efforts to find the speculated treasure or historical artifacts believed to be on Oak Island. ";
    let context = passage.repeat(4);
    let mut request = GenerationRequest::new(vec![ChatMessage::user(format!(
        "{context}\nWhere are the Lagina brothers originally from?"
    ))]);
    request.max_tokens = 64;
    for round in 0..2 {
        let start = Instant::now();
        let mut first = None;
        let completion = generator.generate(&request, &mut |_| {
            first.get_or_insert_with(|| start.elapsed());
        })?;
        let total = start.elapsed();
        let first = first.unwrap_or(total);
        let decode = (total - first).as_secs_f64();
        println!(
            "round {round}: prompt {} tokens, prefill+first token {:.2} s ({:.0} tok/s), decode {} tokens in {:.2} s ({:.1} tok/s)\n  {:?}",
            completion.prompt_tokens,
            first.as_secs_f64(),
            completion.prompt_tokens as f64 / first.as_secs_f64(),
            completion.completion_tokens.saturating_sub(1),
            decode,
            completion.completion_tokens.saturating_sub(1) as f64 / decode.max(1e-9),
            completion.text
        );
    }
    Ok(())
}
