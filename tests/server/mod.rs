//! Starting the real `ibex serve` in a child process on an ephemeral port, for the HTTP tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub client: reqwest::blocking::Client,
}

impl Server {
    /// Starts `ibex serve` on `data_dir` with `extra` arguments and waits until it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::spawn(data_dir, extra, Stdio::inherit(), "warn")
    }

    /// [`Server::start`], with the server's stderr (its log) delivered line by line on the
    /// returned channel (and echoed to the test's stderr).
    pub fn start_with_log(
        data_dir: &Path,
        extra: &[&str],
    ) -> (Server, std::sync::mpsc::Receiver<String>) {
        let mut server = Server::spawn(data_dir, extra, Stdio::piped(), "info");
        let stderr = server.child.stderr.take().expect("piped stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                let _ = sender.send(line);
            }
        });
        (server, receiver)
    }

    /// `log_level` is the server's IBEX_LOG: `warn` where its stderr goes to the test output
    /// (failed requests only), `info` where a test reads every line.
    fn spawn(data_dir: &Path, extra: &[&str], stderr: Stdio, log_level: &str) -> Server {
        // The model must be in the cache before the child needs it.
        let _ = crate::common::default_model();
        let mut child = Command::new(crate::common::ibex_bin())
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .env("IBEX_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("ibex serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server prints its address before anything else")
                .expect("readable stdout");
            if let Some(rest) = line.strip_prefix("Serving ") {
                let url = rest.rsplit(" at ").next().unwrap_or_default();
                break url.trim_end_matches('/').to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Server {
            child,
            base,
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends `method path` with an optional JSON body and bearer key; returns status and body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(body), None)
    }

    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("PUT", path, Some(body), None)
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None, None)
    }

    /// Sends a raw body with a content type.
    pub fn raw(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = self
            .client
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The server's `ibex_http_requests_in_flight` gauge, as `/metrics` reports it (the scrape
    /// that reads it counts itself).
    pub fn requests_in_flight(&self) -> i64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .expect("the server answers /metrics");
        text.lines()
            .find_map(|l| l.strip_prefix("ibex_http_requests_in_flight "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no in-flight gauge in /metrics:\n{text}"))
    }

    /// Returns once the server is serving a request besides the scrape that asks: how a test
    /// knows that a request it sent from another thread has reached the server (rather than
    /// guessing with a sleep). Polls (each poll is a round trip to the server); fails after two
    /// minutes.
    pub fn wait_for_request_in_flight(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.requests_in_flight() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no request reached the server within two minutes"
            );
        }
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("the server exits")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts the API's error shape and returns the code.
pub fn error_code(body: &Value) -> String {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error without a message: {body}");
    code.to_string()
}
