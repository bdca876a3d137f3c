//! RAG answers over an index directory: `ibex ask`.

use std::path::Path;

use ibex_compressor::{default_compressor, IbParams};
use ibex_embedder::Device;
use ibex_pipeline::{AnswerOptions, RagAnswer};

use crate::{Generator, Result};

/// Answers `question` from the index at `dir` with `generator` (`ibex ask`): retrieve, compress
/// (unless `options` says not to), prompt, and check the citations. The index's model runs on
/// `device` (or `IBEX_DEVICE`'s); `on_text` hears the answer as it is generated.
pub fn ask(
    dir: &Path,
    question: &str,
    generator: &dyn Generator,
    options: &AnswerOptions,
    device: Option<&Device>,
    on_text: &mut dyn FnMut(&str),
) -> Result<RagAnswer> {
    let (index, embedder) = ibex_indexer::open_index(dir, None, device)?;
    let compressor = default_compressor(embedder.clone(), IbParams::default());
    Ok(ibex_pipeline::answer(
        &index,
        embedder.as_ref(),
        &compressor,
        generator,
        question,
        options,
        on_text,
    )?)
}
