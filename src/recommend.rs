//! Generative recommendation over a catalog index directory: `ibex recommend`.

use std::io::BufRead;
use std::path::Path;

use ibex_embedder::Device;
use ibex_pipeline::interactions::{CoOccurrence, Interactions};
use ibex_pipeline::recommend::ItemCatalog;
use ibex_pipeline::{RecommendOptions, Recommendation};

use crate::{Generator, IbexError, Result};

/// Recommends items of the catalog index at `dir` for `history` (`ibex recommend`). Co-occurrence
/// comes from `interactions`, else from the index's installed interaction data when present. The
/// index's model runs on `device` (or `IBEX_DEVICE`'s).
pub fn recommend_from_index(
    dir: &Path,
    history: &[String],
    wish: Option<&str>,
    interactions: Option<&Path>,
    generator: &dyn Generator,
    options: &RecommendOptions,
    device: Option<&Device>,
) -> Result<Recommendation> {
    let (index, embedder) = ibex_indexer::open_index(dir, None, device)?;
    let catalog = ItemCatalog::from_index(&index)?;
    let interactions = match interactions {
        Some(path) => Some(Interactions::read(path)?),
        None => Interactions::load_for_index(&index)?,
    };
    let co = interactions.map(|i| {
        let histories = i.histories();
        CoOccurrence::build(histories.values().map(Vec::as_slice))
    });
    Ok(ibex_pipeline::recommend(
        &catalog,
        co.as_ref(),
        Some(embedder.as_ref()),
        generator,
        history,
        wish,
        options,
    )?)
}

/// Reads a history given as `ID,ID,...`, or as a file of one id per line (`@path`; blank lines
/// skipped). Ids are trimmed; empty entries are dropped.
pub fn parse_history(spec: &str) -> Result<Vec<String>> {
    if let Some(path) = spec.strip_prefix('@') {
        let io_error = |source| IbexError::Io {
            context: format!("reading {path}"),
            source,
        };
        let file = std::fs::File::open(path).map_err(|source| IbexError::Io {
            context: format!("opening {path}"),
            source,
        })?;
        let mut ids = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(io_error)?;
            let id = line.trim();
            if !id.is_empty() {
                ids.push(id.to_string());
            }
        }
        return Ok(ids);
    }
    Ok(spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_from_a_list_or_a_file() {
        assert_eq!(parse_history(" 1, 2,,3 ").unwrap(), ["1", "2", "3"]);
        assert!(parse_history("").unwrap().is_empty());
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "10\n\n  20 \n").unwrap();
        let spec = format!("@{}", file.path().display());
        assert_eq!(parse_history(&spec).unwrap(), ["10", "20"]);
        let missing = parse_history("@/no/such/history").unwrap_err().to_string();
        assert!(missing.contains("opening /no/such/history"), "{missing}");
    }
}
