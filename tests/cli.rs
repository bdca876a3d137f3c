//! The command line's contract: names, flags and output formats that other tools call.

mod common;

use std::process::{Command, Stdio};

fn ibex(args: &[&str]) -> std::process::Output {
    Command::new(common::ibex_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn write_beir(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    common::write_jsonl(
        &dir.join("corpus.jsonl"),
        &[
            (
                "d1",
                "Glaciers",
                "Mountain glaciers retreat as summers warm.",
            ),
            (
                "d2",
                "Espresso",
                "Espresso forces hot water through finely ground coffee.",
            ),
            ("d3", "Chess", "Castle early to keep the king safe."),
        ],
    );
    std::fs::write(dir.join("queries.jsonl"), "{\"_id\": \"q1\", \"text\": \"melting ice in the mountains\"}\n{\"_id\": \"q2\", \"text\": \"how is coffee brewed under pressure\"}\n{\"_id\": \"q3\", \"text\": \"unjudged\"}\n").unwrap();
    std::fs::write(
        dir.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t0\n",
    )
    .unwrap();
}

#[test]
fn index_search_eval_and_embed_speak_their_formats() {
    let temp = tempfile::tempdir().unwrap();
    let beir = temp.path().join("beir");
    write_beir(&beir);
    let index = temp.path().join("idx");
    let index_arg = index.to_str().unwrap();

    let out = ibex(&["index", beir.to_str().unwrap(), "--index", index_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3 added"),
        "one-line summary when stderr is not a terminal"
    );

    let out = ibex(&[
        "search",
        "--index",
        index_arg,
        "--mode",
        "hybrid",
        "--top-k",
        "2",
        "--passages",
        "1",
        "--json",
        "glacier melt",
    ]);
    assert!(out.status.success());
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hits = results["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["id"], "d1");
    let passage = &hits[0]["passages"][0];
    assert_eq!(
        (passage["start"].as_u64(), passage["end"].as_u64()),
        (Some(0), Some(42))
    );
    assert!(passage["text"]
        .as_str()
        .unwrap()
        .starts_with("Mountain glaciers"));

    let run_file = temp.path().join("run.trec");
    let out = ibex(&[
        "eval",
        beir.to_str().unwrap(),
        "--index",
        index_arg,
        "--mode",
        "bm25",
        "--json",
        "--run-file",
        run_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "exactly one JSON object: {stdout}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let mut keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["map", "mrr@10", "ndcg@10", "queries", "recall@100"]);
    assert_eq!(report["queries"], 2, "only judged queries count");
    assert_eq!(report["mrr@10"], 1.0);
    let run = std::fs::read_to_string(&run_file).unwrap();
    let first = run.lines().next().unwrap();
    let fields: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(
        (fields.len(), fields[1], fields[3]),
        (6, "Q0", "1"),
        "TREC run format: {first}"
    );

    let mut child = Command::new(common::ibex_bin())
        .arg("embed")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"first line\n{\"text\": \"second\"}\n\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Vec<f64>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "one vector per input line, empty lines included"
    );
    assert!(lines.iter().all(|v| v.len() == 384));

    let out = ibex(&["delete", "--index", index_arg, "d3"]);
    assert!(out.status.success());
    let out = ibex(&[
        "search",
        "--index",
        index_arg,
        "--mode",
        "bm25",
        "--json",
        "castle king",
    ]);
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(results["hits"].as_array().unwrap().is_empty());
}
