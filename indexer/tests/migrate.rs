//! Format 1 indexes (metadata indexed as `key=value` text only) are refused with a message that
//! names `ibex migrate`, and `migrate` upgrades them in place: typed terms appear, documents,
//! chunk keys and vectors stay as they were, and the upgrade commits like any other write.
//!
//! The format 1 index is made the way version 1 wrote it: the same schema and stored fields,
//! `meta` holding only `key=value` terms, and a manifest saying `"format_version": 1`.

use std::path::Path;

use ibex_indexer::metadata::metadata_terms;
use ibex_indexer::{
    english_analyzer, migrate, ChunkSpan, ChunkingParams, Document, EmbeddedChunks, Index,
    IndexError, ModelInfo, ANALYZER, FORMAT_VERSION,
};
use serde_json::{json, Value};
use tantivy::schema::Value as _;
use tantivy::{TantivyDocument, Term};

const DIMENSION: usize = 4;
const MODEL_ID: &str = "test/synthetic-4";

fn vector(n: usize) -> Vec<f32> {
    let raw: Vec<f32> = (0..DIMENSION)
        .map(|i| ((n * 5 + i * 3) as f32).sin() + 0.1)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    raw.into_iter().map(|x| x / norm).collect()
}

fn build(dir: &Path) -> Index {
    let model = ModelInfo {
        id: MODEL_ID.into(),
        source: "test".into(),
        dimension: DIMENSION,
    };
    let mut index = Index::create(dir, model, ChunkingParams::default()).unwrap();
    let docs: Vec<(Document, EmbeddedChunks)> = (0..20)
        .map(|n| {
            let text = format!("report number {n} on river ice");
            let metadata = json!({"year": 2010 + n, "lang": if n % 2 == 0 { "en" } else { "de" }});
            let Value::Object(metadata) = metadata else {
                unreachable!()
            };
            let chars = text.chars().count();
            let doc = Document {
                id: format!("doc-{n:02}"),
                title: format!("Report {n}"),
                text,
                metadata,
            };
            let chunks = EmbeddedChunks {
                spans: vec![ChunkSpan {
                    start: 0,
                    end: chars,
                }],
                vectors: vector(n),
            };
            (doc, chunks)
        })
        .collect();
    {
        let mut writer = index.embedded_writer().unwrap();
        writer.upsert_embedded(MODEL_ID, &docs).unwrap();
        writer.commit().unwrap();
        writer.finish().unwrap();
    }
    index.refresh().unwrap();
    index
}

/// Rewrites the index as format 1 wrote it: equality terms only, and version 1 in the manifest.
fn downgrade_to_format_1(dir: &Path, generation: u64) {
    let lexical = tantivy::Index::open_in_dir(dir.join("lexical")).unwrap();
    lexical.tokenizers().register(ANALYZER, english_analyzer());
    let schema = lexical.schema();
    let field = |name: &str| schema.get_field(name).unwrap();
    let reader = lexical.reader().unwrap();
    let searcher = reader.searcher();
    let mut writer: tantivy::IndexWriter = lexical.writer_with_num_threads(1, 15_000_000).unwrap();
    for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
        for doc_id in segment.doc_ids_alive() {
            let stored: TantivyDocument = searcher
                .doc(tantivy::DocAddress::new(ordinal as u32, doc_id))
                .unwrap();
            let text = |name: &str| {
                stored
                    .get_first(field(name))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let metadata: serde_json::Map<String, Value> =
                serde_json::from_str(&text("metadata")).unwrap();
            let mut old = stored.clone();
            old.add_text(
                field("contents"),
                format!("{}\n{}", text("title"), text("text")),
            );
            for term in metadata_terms(&metadata) {
                if !term.starts_with('\0') {
                    old.add_text(field("meta"), term);
                }
            }
            writer.delete_term(Term::from_field_text(field("id"), &text("id")));
            writer.add_document(old).unwrap();
        }
    }
    let mut prepared = writer.prepare_commit().unwrap();
    prepared.set_payload(&format!("{{\"ibex_generation\":{generation}}}"));
    prepared.commit().unwrap();
    writer.wait_merging_threads().unwrap();

    let path = dir.join(format!("manifest-{generation:08}.json"));
    let mut file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file["manifest"]["format_version"] = json!(1);
    let crc = crc32fast::hash(file["manifest"].to_string().as_bytes());
    file["crc32"] = json!(crc);
    std::fs::write(&path, file.to_string()).unwrap();
}

fn has_term(index: &Index, term: &str) -> bool {
    let term = Term::from_field_text(index.fields().meta, term);
    index.searcher().doc_freq(&term).unwrap() > 0
}

#[test]
fn a_format_1_index_is_refused_with_the_command_that_upgrades_it_and_migrates_in_place() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("old");
    let index = build(&dir);
    let generation = index.manifest().generation;
    let query = vector(7);
    let before = index.search_vectors(&query, 5, None).unwrap();
    drop(index);
    downgrade_to_format_1(&dir, generation);

    let error = Index::open(&dir).err().expect("format 1 is refused");
    assert!(
        matches!(error, IndexError::UnsupportedFormat { found: 1, .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("ibex migrate {}", dir.display())),
        "{message}"
    );

    let report = migrate(&dir).unwrap();
    assert_eq!(
        (report.from_version, report.to_version),
        (1, FORMAT_VERSION)
    );
    assert_eq!(report.documents, 20);
    assert_eq!(report.generation, generation + 1);

    let index = Index::open(&dir).unwrap();
    assert_eq!(index.manifest().format_version, FORMAT_VERSION);
    assert_eq!(index.num_documents(), 20);
    let typed = ibex_indexer::metadata::OrderedValue::Number(2015.0).term("year");
    assert!(has_term(&index, &typed), "typed terms were written");
    assert!(has_term(&index, "lang=en"), "equality terms were kept");
    let stored = index.get_document("doc-05").unwrap().unwrap();
    assert_eq!(stored.title, "Report 5");
    assert_eq!(stored.metadata["year"], json!(2015));
    assert_eq!(
        index.search_vectors(&query, 5, None).unwrap(),
        before,
        "vectors and chunk keys unchanged"
    );

    // Migrating a current index does nothing.
    drop(index);
    let again = migrate(&dir).unwrap();
    assert_eq!((again.documents, again.generation), (0, generation + 1));
}

#[test]
fn migration_waits_for_no_one_holding_the_writer_lock() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("old");
    let index = build(&dir);
    let generation = index.manifest().generation;
    drop(index);
    downgrade_to_format_1(&dir, generation);
    // A writer of the old format holds the lock: migrate says so and changes nothing.
    let lexical = tantivy::Index::open_in_dir(dir.join("lexical")).unwrap();
    let held: tantivy::IndexWriter = lexical.writer_with_num_threads(1, 15_000_000).unwrap();
    let error = migrate(&dir).unwrap_err();
    assert!(matches!(error, IndexError::Locked { .. }), "{error}");
    drop(held);
    assert!(matches!(
        Index::open(&dir).err(),
        Some(IndexError::UnsupportedFormat { found: 1, .. })
    ));
    assert_eq!(migrate(&dir).unwrap().documents, 20);
}
