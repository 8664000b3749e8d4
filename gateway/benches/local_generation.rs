//! The local pool's overhead: tokens per second and time to first token of the same model,
//! (a) run directly by `Generator` on one dedicated thread, (b) served by the gateway through a
//! one-worker pool and streamed over HTTP (queue, channel, caller encoder, SSE, loopback).
//! Both run one ONNX Runtime intra-op thread on the same machine, interleaved round by round.
//!
//! `bash benches/local.sh` makes the bench model and runs this; or
//! `SWITCHYARD_BENCH_LM=path/model.onnx cargo bench -p switchyard --bench local_generation`.
//! Needs `target/onnx/lib/libonnxruntime.so.1.31.1` (`scripts/fetch-models.sh`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard::config::Device;
use switchyard::local::generate::{GenerateRequest, Generator, Step};
use switchyard::local::sampling::SamplingParams;
use switchyard_adapters::canonical::{Message, Part, Role};

/// Generated tokens per request (the oracle's answer to [`PROMPT`] is longer).
const MAX_TOKENS: u32 = 100;
/// U+0001 counts through every ASCII byte up to 'z': 121 one-character tokens before the end
/// token, each released as text at once (a prompt in the 0x80–0xFF range would produce lone
/// UTF-8 continuation bytes, rightly held back until they form text).
const PROMPT: &str = "\u{1}";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn request() -> GenerateRequest {
    GenerateRequest {
        messages: vec![Message {
            role: Role::User,
            content: vec![Part::Text(PROMPT.into())],
        }],
        max_tokens: Some(MAX_TOKENS),
        stop: Vec::new(),
        sampling: SamplingParams::default(),
    }
}

/// One measured generation: time to the first token, tokens after it per second.
#[derive(Debug, Clone, Copy)]
struct Run {
    ttft: Duration,
    tokens_per_s: f64,
}

fn direct(generator: &mut Generator) -> Run {
    let start = Instant::now();
    let mut seq = match generator.start(&request()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let mut first = None;
    let mut tokens = 0u32;
    loop {
        let step = generator.step(&mut seq).unwrap_or_else(|e| panic!("{e}"));
        tokens += 1;
        let now = Instant::now();
        first.get_or_insert(now);
        if matches!(step, Step::Done(..)) {
            let first = first.unwrap_or(now);
            return Run {
                ttft: first - start,
                tokens_per_s: f64::from(tokens - 1) / (now - first).as_secs_f64(),
            };
        }
    }
}

/// One streaming request over a plain HTTP/1.1 connection; times the first and last content
/// events.
fn through_gateway(port: u16) -> Run {
    let body = format!(
        r#"{{"model":"bench","stream":true,"max_tokens":{MAX_TOKENS},"messages":[{{"role":"user","content":"\u0001"}}]}}"#
    );
    let start = Instant::now();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    conn.set_nodelay(true).ok();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())
        .and_then(|()| conn.write_all(body.as_bytes()))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut reader = BufReader::new(conn);
    let (mut first, mut last, mut events) = (None, None, 0u32);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        if line.starts_with("data: ")
            && line.contains("\"content\":\"")
            && !line.contains("\"content\":\"\"")
        {
            let now = Instant::now();
            first.get_or_insert(now);
            last = Some(now);
            events += 1;
        }
        if line.starts_with("data: [DONE]") {
            break;
        }
    }
    let (Some(first), Some(last)) = (first, last) else {
        panic!("no content events from the gateway")
    };
    Run {
        ttft: first - start,
        tokens_per_s: f64::from(events.saturating_sub(1)) / (last - first).as_secs_f64(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn start_gateway(model: &Path, lib: &Path) -> (Child, u16, PathBuf) {
    let (port, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sy-bench-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  admin_listen: \"127.0.0.1:{admin}\"\n  threads: 1\ntelemetry:\n  access_log: off\nproviders:\n  - {{ name: cpu0, kind: local, device: cpu, workers: 1, queue: 8, library: \"{}\" }}\nmodels:\n  - name: bench\n    deployments:\n      - {{ provider: cpu0, model: \"{}\" }}\n",
        lib.display(),
        model.display()
    );
    let path = dir.join("bench.yaml");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--conf"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port, dir)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let model = std::env::var_os("SWITCHYARD_BENCH_LM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/onnx/bench-lm/model.onnx"));
    let model = if model.is_file() {
        model
    } else {
        eprintln!(
            "{} missing (bash benches/local.sh makes it); using the tiny test model",
            model.display()
        );
        root().join("conf/models/tiny-lm/model.onnx")
    };
    let lib = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/onnx/lib/libonnxruntime.so.1.31.1"));
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);

    // Direct: the model on a dedicated thread, as a pool worker holds it.
    let (jobs, job_rx) = std::sync::mpsc::channel::<std::sync::mpsc::Sender<Run>>();
    let (lib_for_thread, model_for_thread) = (lib.clone(), model.clone());
    std::thread::spawn(move || {
        let env = switchyard::local::runtime::environment(Some(&lib_for_thread))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut generator = Generator::load(&env, &model_for_thread, Device::Cpu, 1)
            .unwrap_or_else(|e| panic!("{e}"));
        direct(&mut generator); // warm-up
        while let Ok(reply) = job_rx.recv() {
            let _ = reply.send(direct(&mut generator));
        }
    });
    let (mut gateway, port, dir) = start_gateway(&model, &lib);
    through_gateway(port); // warm-up: the worker loads the model

    let (mut d, mut g) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (tx, rx) = std::sync::mpsc::channel();
        jobs.send(tx).unwrap_or_else(|e| panic!("{e}"));
        d.push(rx.recv().unwrap_or_else(|e| panic!("{e}")));
        g.push(through_gateway(port));
    }
    let _ = gateway.kill();
    let mut stderr = String::new();
    if let Some(mut e) = gateway.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let _ = gateway.wait();
    let _ = std::fs::remove_dir_all(dir);

    let tps = |runs: &[Run]| median(runs.iter().map(|r| r.tokens_per_s).collect());
    let ttft = |runs: &[Run]| median(runs.iter().map(|r| r.ttft.as_secs_f64() * 1000.0).collect());
    println!(
        "model {} · {MAX_TOKENS} tokens per request · {rounds} rounds · medians",
        model.display()
    );
    println!("| path | tokens/s | ms/token | time to first token ms |");
    println!("|---|---:|---:|---:|");
    for (name, runs) in [
        ("direct (Generator on one thread)", &d),
        ("through the gateway (pool, HTTP stream)", &g),
    ] {
        println!(
            "| {name} | {:.0} | {:.3} | {:.2} |",
            tps(runs),
            1000.0 / tps(runs),
            ttft(runs)
        );
    }
    println!(
        "pool overhead: gateway/direct tokens/s = {:.3}× ({:+.1} %); time to first token +{:.2} ms",
        tps(&g) / tps(&d),
        (tps(&g) / tps(&d) - 1.0) * 100.0,
        ttft(&g) - ttft(&d)
    );
    if stderr.contains("panicked") {
        eprintln!("gateway stderr:\n{stderr}");
    }
}
