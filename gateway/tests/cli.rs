//! The operator's CLI (`switchyard keys|usage|status`) run as the real binary against a running
//! gateway's admin API: tables for people, `--json` for scripts, and one line on stderr with a
//! non-zero exit for every failure.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN: &str = "adm-cli-0123456789abcdef";
const KEY: &str = "sk-cli-config-key-0123456789";

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `switchyard ARGS` against `gw`'s admin listener, the token from the environment.
fn cli(gw: &Gateway, args: &[&str]) -> Out {
    cli_with(gw, args, Some(ADMIN))
}

fn cli_with(gw: &Gateway, args: &[&str], token: Option<&str>) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(args)
        .arg("--admin")
        .arg(format!("http://127.0.0.1:{}", gw.admin_port))
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env_remove("SWITCHYARD_ADMIN_URL");
    if let Some(t) = token {
        cmd.env("SWITCHYARD_ADMIN_TOKEN", t);
    }
    let out = cmd.output().expect("run switchyard");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A failure: non-zero exit, nothing on stdout, exactly one line on stderr containing `want`.
fn assert_fails(out: &Out, want: &str) {
    assert!(!out.ok, "expected a failure, got: {}", out.stdout);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
    assert!(out.stderr.starts_with("switchyard: "), "{}", out.stderr);
    assert!(
        out.stderr.contains(want),
        "want {want:?} in {:?}",
        out.stderr
    );
}

async fn start(dir: &std::path::Path) -> Gateway {
    let cfg = format!(
        "providers:\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1, price: {{ input_per_mtok: 1000, output_per_mtok: 1000 }} }}\n  - name: other\n    deployments:\n      - {{ provider: sim, model: mock-2 }}\nauth:\n  api_keys:\n    - {{ name: cfg-key, key: {KEY}, team: ops }}\nbudgets:\n  - {{ scope: team:ops, limit: 100, period: monthly }}\nstore: {{ kind: sqlite, path: {}, flush_interval: 50ms }}\n",
        dir.join("cli.db").display()
    );
    Gateway::start(&cfg, &format!("  admin_token: {ADMIN}\n")).await
}

async fn chat_status(gw: &Gateway, key: &str, model: &str) -> u16 {
    let auth = format!("Bearer {key}");
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    gw.request(
        "POST",
        "/v1/chat/completions",
        Some(body.as_bytes()),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
    )
    .await
    .status
}

fn secret_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("no secret line in {stdout:?}"))
        .to_string()
}

fn temp_dir() -> std::path::PathBuf {
    scratch_dir("sy-cli")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_rotated_and_revoked_from_the_command_line() {
    let dir = temp_dir();
    let gw = start(&dir).await;

    let out = cli(
        &gw,
        &[
            "keys",
            "create",
            "--name",
            "bot",
            "--team",
            "support",
            "--models",
            "chat",
            "--expires",
            "30d",
        ],
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("created key bot (team support)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("shown once"));
    let secret = secret_of(&out.stdout);
    assert_eq!(chat_status(&gw, &secret, "chat").await, 200);
    assert_eq!(
        chat_status(&gw, &secret, "other").await,
        403,
        "--models limits the key"
    );

    // --json: the API's answer as is.
    let out = cli(&gw, &["keys", "create", "--name", "bot-two", "--json"]);
    assert!(out.ok, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["name"], "bot-two");
    assert!(v["key"].as_str().is_some_and(|k| !k.is_empty()));

    // The list: aligned columns, never a secret.
    let out = cli(&gw, &["keys", "list"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stdout.contains(&secret));
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header = lines[0];
    assert!(header.starts_with("NAME"), "{header}");
    let bot = lines
        .iter()
        .find(|l| l.starts_with("bot "))
        .unwrap_or_else(|| panic!("bot listed: {}", out.stdout));
    let team_col = header.find("TEAM").expect("TEAM column");
    assert_eq!(
        bot.find("support"),
        Some(team_col),
        "columns line up:\n{}",
        out.stdout
    );
    let state_col = header.find("STATE").expect("STATE column");
    assert_eq!(bot.get(state_col..state_col + 6), Some("active"));
    assert!(bot.contains("chat"));
    assert!(
        lines.iter().any(|l| l.starts_with("cfg-key ")),
        "config keys listed too"
    );
    let out = cli(&gw, &["keys", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(3));

    // Rotation: the new secret works at once, the old one for the grace period.
    let out = cli(&gw, &["keys", "rotate", "bot", "--grace", "10m"]);
    assert!(out.ok, "{}", out.stderr);
    let new_secret = secret_of(&out.stdout);
    assert_ne!(new_secret, secret);
    assert!(out.stdout.contains("previous secret works until"));
    assert_eq!(chat_status(&gw, &new_secret, "chat").await, 200);
    assert_eq!(chat_status(&gw, &secret, "chat").await, 200);

    // Revocation.
    let out = cli(&gw, &["keys", "revoke", "bot"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout, "revoked key bot\n");
    assert_eq!(chat_status(&gw, &new_secret, "chat").await, 401);
    let out = cli(&gw, &["keys", "list"]);
    let bot = out
        .stdout
        .lines()
        .find(|l| l.starts_with("bot "))
        .expect("bot");
    assert!(bot.contains("revoked"));

    // Every failure: one line, non-zero.
    assert_fails(&cli(&gw, &["keys", "revoke", "nosuch"]), "(404)");
    assert_fails(
        &cli(&gw, &["keys", "create", "--name", "bot-two"]),
        "already exists",
    );
    assert_fails(
        &cli(&gw, &["keys", "create", "--name", "x", "--models", "nope"]),
        "unknown model `nope`",
    );
    assert_fails(&cli(&gw, &["keys", "revoke", "cfg-key"]), "config file");
    assert_fails(
        &cli(&gw, &["keys", "create", "--name", "x", "--expires", "soon"]),
        "--expires",
    );
    assert_fails(
        &cli(
            &gw,
            &[
                "keys", "create", "--name", "x", "--budget", "1", "--period", "hourly",
            ],
        ),
        "budget.period",
    );
    // Bad flags: clap's usage block becomes one line too.
    assert_fails(&cli(&gw, &["keys", "create", "--nme", "x"]), "--nme");
    assert_fails(&cli(&gw, &["keys", "create"]), "--name");
    assert_fails(
        &cli(&gw, &["keys", "create", "--name", "x", "--rpm", "many"]),
        "many",
    );
    assert_fails(&cli(&gw, &["keys", "frobnicate"]), "frobnicate");
    assert_fails(&cli(&gw, &["keys"]), "subcommand");
    assert_fails(
        &cli_with(&gw, &["keys", "list"], Some("wrong-token-000000")),
        "(401)",
    );
    assert_fails(
        &cli_with(&gw, &["keys", "list"], None),
        "SWITCHYARD_ADMIN_TOKEN",
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "status",
            "--admin",
            &format!("http://{}", refused_addr()),
            "--token",
            ADMIN,
        ])
        .output()
        .expect("run");
    assert_fails(
        &Out {
            ok: refused.status.success(),
            stdout: String::from_utf8_lossy(&refused.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&refused.stderr).into_owned(),
        },
        "cannot reach the admin API",
    );
    // Nothing secret reached the audit log.
    assert!(!gw.audit_log().contains(&new_secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_status_show_the_ledger_and_the_gateway() {
    let dir = temp_dir();
    let gw = start(&dir).await;
    for _ in 0..2 {
        assert_eq!(chat_status(&gw, KEY, "chat").await, 200);
    }
    assert_eq!(chat_status(&gw, KEY, "other").await, 200);

    // The ledger is written off the request path: wait for both rows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let out = cli(&gw, &["usage", "--by", "model", "--since", "1d", "--json"]);
        assert!(out.ok, "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        let total: u64 = v["totals"]
            .as_array()
            .map(|t| t.iter().filter_map(|r| r["requests"].as_u64()).sum())
            .unwrap_or(0);
        if total == 3 {
            break v;
        }
        assert!(Instant::now() < deadline, "ledger rows never arrived: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let chat = v["totals"]
        .as_array()
        .and_then(|t| t.iter().find(|r| r["group"] == "chat"))
        .expect("chat row");
    assert_eq!(chat["requests"], 2);

    let out = cli(&gw, &["usage", "--by", "key", "--since", "7d"]);
    assert!(out.ok, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("GROUP"))
        .expect("header");
    let row = lines[header + 1];
    assert!(row.starts_with("cfg-key "), "{}", out.stdout);
    let req_col = lines[header].find("REQUESTS").expect("REQUESTS");
    assert_eq!(row.get(req_col..req_col + 1), Some("3"), "{}", out.stdout);
    assert!(out.stdout.contains("month to date $"));
    assert_fails(&cli(&gw, &["usage", "--since", "a while"]), "--since");

    let out = cli(&gw, &["status"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.starts_with("status ok"), "{}", out.stdout);
    assert!(
        out.stdout.contains("last 15 min: 3 requests"),
        "{}",
        out.stdout
    );
    let sim = out
        .stdout
        .lines()
        .find(|l| l.starts_with("sim "))
        .expect("sim row");
    assert!(sim.contains(" up "), "{sim}");
    assert!(out
        .stdout
        .lines()
        .any(|l| l.starts_with("chat ") && l.contains("sim/mock-1") && l.ends_with("closed")));
    assert!(out
        .stdout
        .lines()
        .any(|l| l.starts_with("team:ops ") && l.contains("monthly")));
    let out = cli(&gw, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["traffic"]["window"]["requests"], 3);
}

/// `keys create --rpm N --budget USD --period P`: the limits are stored with the key and
/// enforced like a config key's (the 6th request over rpm=5 is a 429 rate limit; a spent budget
/// is a 429 `budget_exceeded`), and they survive a restart of the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_with_rpm_and_a_budget_are_enforced() {
    let dir = temp_dir();
    let gw = start(&dir).await;
    let out = cli(&gw, &["keys", "create", "--name", "limited", "--rpm", "5"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("limit: 5 requests per minute"),
        "{}",
        out.stdout
    );
    let limited = secret_of(&out.stdout);
    let out = cli(
        &gw,
        &[
            "keys", "create", "--name", "capped", "--budget", "0.001", "--period", "daily",
            "--json",
        ],
    );
    assert!(out.ok, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["budget"]["period"], "daily");
    let capped = v["key"].as_str().expect("secret").to_string();
    // The list shows each key's limit and budget.
    let out = cli(&gw, &["keys", "list"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let rpm_col = lines[0].find("RPM").expect("RPM column");
    let budget_col = lines[0].find("BUDGET").expect("BUDGET column");
    let row = |name: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} listed: {}", out.stdout))
    };
    assert_eq!(
        row("limited").get(rpm_col..rpm_col + 1),
        Some("5"),
        "{}",
        out.stdout
    );
    assert!(
        row("capped")[budget_col..].starts_with("$0.001/daily"),
        "{}",
        out.stdout
    );
    for i in 0..5 {
        assert_eq!(chat_status(&gw, &limited, "chat").await, 200, "request {i}");
    }
    let auth = format!("Bearer {limited}");
    let sixth = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(sixth.status, 429, "{}", sixth.text());
    assert!(
        sixth.text().contains("requests_per_minute"),
        "{}",
        sixth.text()
    );
    assert_eq!(
        chat_status(&gw, KEY, "chat").await,
        200,
        "other keys are not limited"
    );

    // A budget of a tenth of a cent: the mock's answers cost a cent each at this price.
    let auth = format!("Bearer {capped}");
    let mut refused = None;
    for _ in 0..5 {
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions",
                Some(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#),
                &[("authorization", &auth), ("content-type", "application/json")],
            )
            .await;
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the budget is enforced");
    assert_eq!(r.status, 429, "{}", r.text());
    let body: serde_json::Value = serde_json::from_str(&r.text()).expect("json");
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("key:capped"),
        "{body}"
    );

    // Stored with the key: a restart keeps both.
    drop(gw);
    let gw = start(&dir).await;
    for i in 0..5 {
        assert_eq!(chat_status(&gw, &limited, "chat").await, 200, "request {i}");
    }
    assert_eq!(chat_status(&gw, &limited, "chat").await, 429);
    // Revoking the key drops its limiter with it.
    let out = cli(&gw, &["keys", "revoke", "limited"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(chat_status(&gw, &limited, "chat").await, 401);
}
