//! `ibex embed`: embed texts from stdin, one JSON array per line out.

use std::io::{BufRead, Write};

use ibex::{IbexError, Result, TextKind};

use super::{stdout_error, Context};

/// Texts embedded per call.
const BATCH: usize = 64;

/// Arguments of `ibex embed`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = ibex::DEFAULT_MODEL_ID)]
    model: String,
    /// Embed as queries (for models that format queries differently).
    #[arg(long)]
    query: bool,
}

/// Reads texts (a line each, or JSON objects with a "text" field) and prints their vectors.
pub fn run(args: Args, context: &Context) -> Result<()> {
    let kind = if args.query {
        TextKind::Query
    } else {
        TextKind::Document
    };
    let embedder = ibex::embedder::load_model_on(&args.model, &context.device)?;
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut batch: Vec<String> = Vec::new();
    let flush = |batch: &mut Vec<String>, out: &mut dyn Write| -> Result<()> {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        for vector in embedder.embed(&refs, kind)? {
            let line = serde_json::to_string(&vector)
                .map_err(|e| IbexError::Output(format!("cannot encode a vector as JSON: {e}")))?;
            writeln!(out, "{line}").map_err(stdout_error)?;
        }
        batch.clear();
        Ok(())
    };
    for (number, line) in stdin.lines().enumerate() {
        let line = line.map_err(|e| IbexError::Io {
            context: format!("reading stdin line {}", number + 1),
            source: e,
        })?;
        batch.push(text_of_line(line, number + 1)?);
        if batch.len() == BATCH {
            flush(&mut batch, &mut out)?;
        }
    }
    flush(&mut batch, &mut out)?;
    out.flush().map_err(stdout_error)
}

/// A JSON object with a "text" field is read as such; anything else is the text itself.
fn text_of_line(line: String, number: usize) -> Result<String> {
    match serde_json::from_str::<serde_json::Value>(&line) {
        Ok(serde_json::Value::Object(object)) => match object.get("text") {
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            _ => Err(IbexError::Usage(format!(
                "stdin line {number}: a JSON object needs a string \"text\" field"
            ))),
        },
        _ => Ok(line),
    }
}
