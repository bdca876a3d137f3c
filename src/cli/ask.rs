//! `ibex ask`: answer a question from an index with the LLM.

use std::io::Write;
use std::path::PathBuf;

use ibex::Result;

use super::{print_json, stdout_error, Context};

/// Arguments of `ibex ask`.
#[derive(clap::Args)]
pub struct Args {
    question: String,
    #[arg(long)]
    index: PathBuf,
    /// Documents retrieved.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Send the retrieved passages whole instead of compressing them.
    #[arg(long)]
    no_compress: bool,
    /// Token budget of the compressed context (default: 64).
    #[arg(long)]
    budget: Option<usize>,
    /// Most tokens of the answer.
    #[arg(long, default_value_t = 200)]
    max_tokens: usize,
    /// Print one JSON object (answer, citations, context, tokens, timings) instead of streaming.
    #[arg(long)]
    json: bool,
}

/// Streams the answer to stdout (or prints it as JSON), then its checked citations.
pub fn run(args: Args, context: &Context) -> Result<()> {
    let generator = ibex::generator::default_generator()?;
    let options = ibex::pipeline::AnswerOptions {
        top_k: args.top_k,
        compress: !args.no_compress,
        budget: args.budget,
        max_tokens: args.max_tokens,
        ..Default::default()
    };
    let mut stdout = std::io::stdout();
    let mut write_failed = None;
    let answer = ibex::rag::ask(
        &args.index,
        &args.question,
        generator.as_ref(),
        &options,
        context.device(),
        &mut |text| {
            if !args.json && write_failed.is_none() {
                if let Err(e) = write!(stdout, "{text}").and_then(|()| stdout.flush()) {
                    write_failed = Some(e);
                }
            }
        },
    )?;
    if let Some(e) = write_failed {
        return Err(stdout_error(e));
    }
    if args.json {
        return print_json(&answer);
    }
    println!();
    // On stdout, right under the answer: a reader must not take an ungrounded answer for a
    // grounded one.
    if let Some(reason) = &answer.support.reason {
        println!("warning: not supported by the passages: {reason}");
    }
    if !answer.invalid_citations.is_empty() {
        eprintln!(
            "(removed citations of passages that were not in the context: {:?})",
            answer.invalid_citations
        );
    }
    for c in &answer.citations {
        println!(
            "[{}] {} ({}) chars {}-{}",
            c.number, c.title, c.doc_id, c.start, c.end
        );
    }
    eprintln!(
        "{}: context {} → {} tokens, prompt {} tokens, {:.1} s",
        answer.model,
        answer.tokens.before_compression,
        answer.tokens.after_compression,
        answer.tokens.prompt,
        answer.timings.total_ms / 1000.0
    );
    Ok(())
}
