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

/// Runs ibex, checks that it succeeded (showing its stderr if not), and returns its stdout.
fn ibex_ok(args: &[&str]) -> Vec<u8> {
    common::succeeded(ibex(args)).stdout
}

/// Runs ibex with its LLM the OpenAI-compatible server at `url` (model "fake", no retries).
fn ibex_with_llm(args: &[&str], url: &str) -> std::process::Output {
    Command::new(common::ibex_bin())
        .args(args)
        .env("IBEX_LLM_URL", url)
        .env("IBEX_LLM_MODEL", "fake")
        .env("IBEX_LLM_MAX_RETRIES", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// [`ibex_ok`], its stdout parsed as one JSON value.
fn ibex_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&ibex_ok(args)).unwrap()
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

/// The small BEIR collection written under `root` and indexed by `ibex index`: its folder, the
/// index's folder, and what `ibex index` printed on stderr.
fn indexed_beir(root: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let beir = root.join("beir");
    write_beir(&beir);
    let index = root.join("idx");
    let out = ibex(&[
        "index",
        beir.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (beir, index, stderr)
}

#[test]
fn index_search_eval_and_embed_speak_their_formats() {
    let temp = tempfile::tempdir().unwrap();
    let (beir, index, stderr) = indexed_beir(temp.path());
    let index_arg = index.to_str().unwrap();
    assert!(
        stderr.contains("3 added"),
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
    let stdout = String::from_utf8(ibex_ok(&[
        "eval",
        beir.to_str().unwrap(),
        "--index",
        index_arg,
        "--mode",
        "bm25",
        "--json",
        "--run-file",
        run_file.to_str().unwrap(),
    ]))
    .unwrap();
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
    assert_eq!(
        keys,
        [
            "latency_ms_p50",
            "latency_ms_p99",
            "map",
            "mrr@10",
            "ndcg@10",
            "queries",
            "recall@100"
        ]
    );
    let p50 = report["latency_ms_p50"].as_f64().unwrap();
    let p99 = report["latency_ms_p99"].as_f64().unwrap();
    assert!(
        p50 > 0.0 && p99 >= p50,
        "latency percentiles are measured: p50 {p50} p99 {p99}"
    );
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

#[test]
fn compress_eval_compress_and_eval_rag_speak_their_formats() {
    let temp = tempfile::tempdir().unwrap();
    let passages = temp.path().join("passages.jsonl");
    std::fs::write(
        &passages,
        "{\"doc_id\": \"a\", \"text\": \"The Eiffel Tower was built in 1889. It is in Paris.\", \"offset\": 100}\n{\"doc_id\": \"b\", \"text\": \"Bread needs yeast.\"}\n",
    )
    .unwrap();
    let c = ibex_json(&[
        "compress",
        "--passages",
        passages.to_str().unwrap(),
        "--query",
        "When was the Eiffel Tower built?",
        "--json",
    ]);
    assert!(c["text"].as_str().unwrap().contains("1889"));
    assert_eq!(c["spans"][0]["doc_id"], "a");
    assert_eq!(c["spans"][0]["start"], 100, "offsets are into the document");
    assert!(c["kept_tokens"].as_u64().unwrap() < c["total_tokens"].as_u64().unwrap());

    let nq = temp.path().join("nq.jsonl");
    let rows: Vec<String> = [
        (
            "when was the eiffel tower built",
            "1889",
            "Eiffel Tower",
            "The Eiffel Tower was built in 1889 for the World's Fair in Paris.",
        ),
        (
            "what does yeast make bread do",
            "rise",
            "Bread",
            "Yeast produces gas that makes bread rise.",
        ),
        (
            "who wrote hamlet",
            "Shakespeare",
            "Hamlet",
            "Hamlet is a tragedy written by William Shakespeare around 1600.",
        ),
    ]
    .iter()
    .map(|(q, a, t, x)| {
        serde_json::json!({"question": q, "answers": [a], "ctxs": [{"title": t, "text": x}]})
            .to_string()
    })
    .collect();
    std::fs::write(&nq, rows.join("\n")).unwrap();
    let index = temp.path().join("pool");
    let report = ibex_json(&[
        "eval-compress",
        nq.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--distractors",
        "2",
        "--json",
    ]);
    let mut keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "baselines",
            "compression",
            "model_calls_per_question",
            "questions",
            "retention",
            "scorer",
            "seconds_per_question"
        ]
    );
    assert_eq!(report["questions"], 3);
    // The default scorer calls no language model; its time per question is reported.
    assert_eq!(report["scorer"], "embedding");
    assert_eq!(report["model_calls_per_question"], 0.0);
    assert!(report["seconds_per_question"]
        .as_f64()
        .is_some_and(|s| s > 0.0));
    for baseline in [
        "keep_all",
        "top1_passage",
        "top_sentences",
        "random_sentences",
    ] {
        assert!(
            report["baselines"][baseline]["retention"].is_number(),
            "{baseline}"
        );
    }
    assert_eq!(report["baselines"]["keep_all"]["compression"], 1.0);
    assert!(report.get("ib_score").is_none(), "only with --ib-score");

    // The IB score, with the embedded model: every method's kept text scored by the likelihood
    // of the gold answer. Keeping everything costs β (2 here) and, with each answer written in
    // its passage, makes the answers likelier than the question alone does.
    let ib_args = [
        "eval-compress",
        nq.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--distractors",
        "2",
        "--ib-score",
        "--ib-beta",
        "2",
        "--json",
    ];
    let report = ibex_json(&ib_args);
    let selector = &report["ib_score"];
    assert!(selector["answer_gain"].is_number() && selector["score"].is_number());
    let keep_all = &report["baselines"]["keep_all"]["ib_score"];
    let gain = keep_all["answer_gain"].as_f64().unwrap();
    assert!(
        gain > 0.0,
        "the answers' own passages make them likelier: {gain}"
    );
    assert!((keep_all["score"].as_f64().unwrap() - (gain - 2.0)).abs() < 1e-9);
    for baseline in ["top1_passage", "top_sentences", "random_sentences"] {
        assert!(
            report["baselines"][baseline]["ib_score"]["score"].is_number(),
            "{baseline}"
        );
    }

    // Resumable: a run stopped after two questions, then the whole run on the same checkpoint,
    // evaluates only the third question and reports what the uninterrupted run did (everything
    // but the times).
    let checkpoint = temp.path().join("compress-checkpoint.jsonl");
    let with_checkpoint = |limit: Option<&str>, budget: Option<&str>| {
        let mut args = ib_args.to_vec();
        args.extend(["--checkpoint", checkpoint.to_str().unwrap()]);
        args.extend(limit.map(|n| ["--limit", n]).into_iter().flatten());
        args.extend(budget.map(|n| ["--budget", n]).into_iter().flatten());
        ibex(&args)
    };
    let first = with_checkpoint(Some("2"), None);
    assert!(first.status.success());
    let records = || {
        std::fs::read_to_string(&checkpoint)
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(records(), 1 + 2, "a header and a line per question");
    let out = with_checkpoint(None, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(records(), 1 + 3);
    let resumed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let without_times = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("seconds_per_question");
        v
    };
    // Equal up to the last digit of a float: serde_json's parsing of the records is not always
    // correctly rounded.
    assert!(
        nearly_equal(
            &without_times(resumed.clone()),
            &without_times(report.clone())
        ),
        "{resumed}\n{report}"
    );
    // Other settings cannot extend that file: their figures would not be comparable.
    let out = with_checkpoint(None, Some("32"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("other settings"), "{stderr}");
    assert_eq!(records(), 1 + 3, "nothing written");

    // eval-rag, against a server that answers every question "1889 [1]": resumable the same way.
    let server = fake_llm("1889 [1]");
    let rag_checkpoint = temp.path().join("rag-checkpoint.jsonl");
    let eval_rag = |limit: &str| {
        let out = common::succeeded(ibex_with_llm(
            &[
                "eval-rag",
                nq.to_str().unwrap(),
                "--index",
                index.to_str().unwrap(),
                "--distractors",
                "2",
                "--limit",
                limit,
                "--checkpoint",
                rag_checkpoint.to_str().unwrap(),
                "--json",
            ],
            &server,
        ));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = eval_rag("1");
    assert_eq!(first["questions"], 1);
    let report = eval_rag("3");
    assert_eq!(report["questions"], 3);
    assert_eq!(report["model"], "fake");
    let lines = std::fs::read_to_string(&rag_checkpoint).unwrap();
    assert_eq!(lines.lines().count(), 1 + 3);
    for context in ["compressed", "uncompressed"] {
        // Only the first question's answer is 1889, and the number is in its context.
        let f = &report[context];
        assert!(
            (f["contains_answer"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
            "{f}"
        );
        assert!(
            (f["exact_match"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
            "{f}"
        );
        assert!(f["prompt_tokens"].as_f64().unwrap() > 0.0);
    }
}

/// Whether two JSON values are equal, numbers within a relative 1e-12.
fn nearly_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| nearly_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| nearly_equal(x, y)))
        }
        _ => a == b,
    }
}

/// A chat-completions server on loopback answering every request with `answer`.
fn fake_llm(answer: &'static str) -> String {
    let reply = serde_json::json!({
        "choices": [{"message": {"role": "assistant", "content": answer},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    })
    .to_string();
    common::misbehaving_server(move |_| {
        Some(common::http_response("200 OK", "application/json", &reply))
    })
    .0
}

#[test]
fn ask_says_visibly_when_the_passages_do_not_hold_the_answer() {
    let temp = tempfile::tempdir().unwrap();
    let (_, index, _) = indexed_beir(temp.path());
    let index_arg = index.to_str().unwrap();

    let ask = |answer: &'static str, json: bool| {
        let mut args = vec!["ask", "How is coffee brewed?", "--index", index_arg];
        if json {
            args.push("--json");
        }
        ibex_with_llm(&args, &fake_llm(answer))
    };
    let invented = ask("Baristas in Milan use 9 bars of pressure [1].", false);
    assert!(
        invented.status.success(),
        "{}",
        String::from_utf8_lossy(&invented.stderr)
    );
    let stdout = String::from_utf8_lossy(&invented.stdout);
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("warning: not supported by the passages"))
        .unwrap_or_else(|| panic!("a visible warning: {stdout}"));
    assert!(
        warning.contains("\"9\"") && warning.contains("\"Milan\""),
        "{warning}"
    );

    let as_json = ask("Baristas in Milan use 9 bars of pressure [1].", true);
    let answer: serde_json::Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert_eq!(answer["supported"], false);
    assert_eq!(answer["unsupported"], serde_json::json!(["9", "Milan"]));

    let grounded = ask(
        "Hot water is forced through finely ground coffee [1].",
        false,
    );
    let stdout = String::from_utf8_lossy(&grounded.stdout);
    assert!(!stdout.contains("warning: not supported"), "{stdout}");
}
