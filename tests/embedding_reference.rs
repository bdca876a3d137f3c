//! ibex's default embedder reproduces an independent sentence-transformers run.

mod common;

use ibex::TextKind;

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y.powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_sentence_transformers_reference_alone_and_in_mixed_batches() {
    let (texts, references) = reference_items();
    assert!(texts.len() >= 5);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let model = common::default_model();
    assert_eq!(model.dimension(), 384);
    assert_eq!(model.max_tokens(), 256);

    // Alone.
    for (text, reference) in texts.iter().zip(&references) {
        let vector = model.embed(&[text], TextKind::Document).unwrap().remove(0);
        let c = cosine(&vector, reference);
        assert!(
            c >= 0.9999,
            "alone: cosine {c} for {:?}",
            text.chars().take(60).collect::<String>()
        );
    }
    // In one batch of mixed lengths, and in a batch in reverse order with duplicates, so that
    // padding and length sorting are exercised.
    let mut shuffled: Vec<usize> = (0..texts.len()).rev().collect();
    shuffled.extend(0..texts.len().min(3));
    for order in [(0..texts.len()).collect::<Vec<_>>(), shuffled] {
        let batch: Vec<&str> = order.iter().map(|&i| texts[i]).collect();
        let vectors = model.embed(&batch, TextKind::Document).unwrap();
        for (&i, vector) in order.iter().zip(&vectors) {
            let c = cosine(vector, &references[i]);
            assert!(c >= 0.9999, "batched: cosine {c} for item {i}");
        }
    }
    // A call with many batches runs them side by side, one per thread (a different code path
    // from one batch split over the threads): same vectors. Two threads whatever the machine.
    let many: Vec<&str> = texts.iter().copied().cycle().take(64 * 10).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let vectors = pool.install(|| model.embed(&many, TextKind::Document).unwrap());
    assert_eq!(vectors.len(), many.len());
    for (k, vector) in vectors.iter().enumerate() {
        let c = cosine(vector, &references[k % texts.len()]);
        assert!(c >= 0.9999, "side by side: cosine {c} for text {k}");
    }
    // Single texts from several threads at once, as concurrent searches embed their queries:
    // each pass runs on a pool thread, which may take up another caller's pass while it waits
    // on its own split operations (work stealing), so the passes' per-thread buffers must not
    // be shared. (They were once: callers failed.) Same vectors as alone.
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let (model, texts, references) = (&model, &texts, &references);
            scope.spawn(move || {
                for round in 0..5 {
                    for (i, text) in texts.iter().enumerate().skip((worker + round) % 3) {
                        let vector = model.embed(&[text], TextKind::Document).unwrap().remove(0);
                        let c = cosine(&vector, &references[i]);
                        assert!(c >= 0.9999, "concurrent: cosine {c} for text {i}");
                    }
                }
            });
        }
    });
}

#[test]
fn vectors_are_normalized_and_tokens_carry_character_offsets() {
    let model = common::default_model();
    let vector = model
        .embed(&["Ünïcödé text, with punctuation!"], TextKind::Query)
        .unwrap()
        .remove(0);
    let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
    let text = "héllo wörld";
    let spans = model.tokenize(text).unwrap();
    let last = spans.last().unwrap();
    assert_eq!(
        last.end,
        text.chars().count(),
        "offsets are in characters, not bytes"
    );
}

/// The fixture's texts and reference vectors.
fn reference_items() -> (Vec<String>, Vec<Vec<f64>>) {
    let fixture: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::shared("fixtures/minilm-l6-v2-reference.json"))
            .expect("../shared/fixtures is present"),
    )
    .unwrap();
    let items = fixture["items"].as_array().unwrap();
    let texts = items
        .iter()
        .map(|i| i["text"].as_str().unwrap().to_string())
        .collect();
    let references = items
        .iter()
        .map(|i| {
            i["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    (texts, references)
}

/// Run by [`bf16_precision_stays_within_its_tolerance_or_is_refused`] in a child process with
/// `IBEX_EMBED_PRECISION=bf16` (a no-op otherwise): alone and in one batch, every vector within
/// cosine 0.999 of the reference (the bar for a precision below f32).
#[test]
fn reduced_precision_child_matches_the_reference() {
    if std::env::var_os("IBEX_EMBED_PRECISION").is_none() {
        return;
    }
    let (texts, references) = reference_items();
    let model = common::default_model();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batched = model.embed(&texts, TextKind::Document).unwrap();
    let mut lowest = f64::MAX;
    for (i, text) in texts.iter().enumerate() {
        let alone = model.embed(&[text], TextKind::Document).unwrap().remove(0);
        lowest = lowest
            .min(cosine(&alone, &references[i]))
            .min(cosine(&batched[i], &references[i]));
    }
    println!("lowest cosine to the reference: {lowest}");
    assert!(lowest >= 0.999, "lowest cosine to the reference: {lowest}");
}

/// `IBEX_EMBED_PRECISION=bf16` embeds within its tolerance where the CPU has AVX512-BF16, and
/// is refused at load, naming what is missing, where the path cannot run (checked on every
/// machine by forcing the AVX2 path).
#[test]
fn bf16_precision_stays_within_its_tolerance_or_is_refused() {
    use ibex::embedder::cpu::{detected, SimdLevel};
    if std::env::var_os("IBEX_EMBED_PRECISION").is_some() || std::env::var_os("IBEX_CPU").is_some()
    {
        return;
    }
    let child = |cpu: Option<&str>| {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "reduced_precision_child_matches_the_reference",
                "--nocapture",
            ])
            .env("IBEX_EMBED_PRECISION", "bf16");
        if let Some(cpu) = cpu {
            command.env("IBEX_CPU", cpu);
        }
        let output = command.output().unwrap();
        let log = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), log)
    };
    if ibex::embedder::bf16_matmul::supported() && detected() == SimdLevel::Avx512 {
        let (passed, log) = child(None);
        assert!(passed && log.contains("1 passed"), "bf16: {log}");
    } else {
        eprintln!(
            "NOTICE: this CPU has no AVX512-BF16; the bf16 path's accuracy is not checked here"
        );
    }
    if SimdLevel::supported().contains(&SimdLevel::Avx2) {
        let (passed, log) = child(Some("avx2"));
        assert!(
            !passed && log.contains("AVX512-BF16"),
            "bf16 on the AVX2 path: {log}"
        );
    }
}

/// The reference test again on every narrower SIMD path this CPU can take (`IBEX_CPU`), each in
/// a process of its own: the path is chosen once per process, and the default path is the one
/// the test above already ran.
#[test]
fn every_simd_path_matches_the_reference() {
    use ibex::embedder::cpu::{detected, SimdLevel};
    if std::env::var_os("IBEX_CPU").is_some() {
        // A child of this test, or a run that forced one path itself.
        return;
    }
    let narrower: Vec<SimdLevel> = SimdLevel::supported()
        .into_iter()
        .filter(|&level| level < detected())
        .collect();
    for level in narrower {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "matches_sentence_transformers_reference_alone_and_in_mixed_batches",
                "--nocapture",
            ])
            .env("IBEX_CPU", level.as_str())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "IBEX_CPU={}: {log}",
            level.as_str()
        );
        // The filter matched the test (a renamed test would otherwise pass by running nothing).
        assert!(
            log.contains("1 passed"),
            "IBEX_CPU={}: {log}",
            level.as_str()
        );
    }
}
