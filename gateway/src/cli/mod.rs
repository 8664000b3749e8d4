//! The operator's commands over the admin API: `switchyard keys create|list|rotate|revoke`,
//! `switchyard usage` and `switchyard status`. Each is one or two admin API calls (`--admin URL`,
//! the token from `--token` or `SWITCHYARD_ADMIN_TOKEN`), printed as aligned tables for people or
//! as the API's JSON with `--json`; every failure is one line on stderr and a non-zero exit.
//! Owns the command line of these commands only; it never opens the config, the store or a
//! provider.

mod http;
mod table;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::process::ExitCode;

/// The admin API's address when `--admin` and `SWITCHYARD_ADMIN_URL` are both absent (the
/// documented `server.admin_listen`).
const DEFAULT_ADMIN: &str = "http://127.0.0.1:9090";

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The admin listener's URL (default: $SWITCHYARD_ADMIN_URL, else http://127.0.0.1:9090).
    #[arg(long, global = true, value_name = "URL")]
    admin: Option<String>,
    /// The admin token (default: $SWITCHYARD_ADMIN_TOKEN).
    #[arg(long, global = true)]
    token: Option<String>,
    /// Print the admin API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, list, rotate and revoke virtual keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Requests, tokens and spend from the ledger.
    Usage {
        /// Group the totals.
        #[arg(long, value_enum)]
        by: Option<By>,
        /// How far back (e.g. 7d, 12h; default: since the start of the month).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Providers' health, circuits, budgets and the last 15 minutes' traffic.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        project: Option<String>,
        /// Models the key may use (comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Requests per minute for this key.
        #[arg(long)]
        rpm: Option<u32>,
        /// A spend limit in USD for this key.
        #[arg(long, value_name = "USD")]
        budget: Option<f64>,
        /// The budget's period: daily, weekly, monthly (default) or total.
        #[arg(long, requires = "budget")]
        period: Option<String>,
        /// When the key stops working: a duration from now (30d, 12h) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List every key (never a secret).
    List,
    /// Give a key a new secret; the old one keeps working for the grace period.
    Rotate {
        name: String,
        /// How long the old secret keeps working (default 1h).
        #[arg(long)]
        grace: Option<String>,
    },
    /// Revoke a key.
    Revoke { name: String },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum By {
    Key,
    Team,
    Project,
    Model,
    Provider,
    Tag,
}

/// What went wrong, as the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("no admin token: pass --token or set SWITCHYARD_ADMIN_TOKEN")]
    NoToken,
    #[error("{0}")]
    Invalid(String),
    #[error("the admin API refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the admin API answered {0} with a body that is not JSON")]
    NotJson(u16),
}

/// Runs an operator command; prints its output or one error line.
pub fn run(command: Command) -> ExitCode {
    match execute(command) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Client {
    at: http::Endpoint,
    token: String,
    json: bool,
}

impl Client {
    fn new(a: AdminArgs) -> Result<Client, CliError> {
        let url = a
            .admin
            .or_else(|| std::env::var("SWITCHYARD_ADMIN_URL").ok())
            .unwrap_or_else(|| DEFAULT_ADMIN.to_string());
        let token = a
            .token
            .or_else(|| std::env::var("SWITCHYARD_ADMIN_TOKEN").ok())
            .filter(|t| !t.trim().is_empty())
            .ok_or(CliError::NoToken)?;
        Ok(Client {
            at: http::Endpoint::parse(&url)?,
            token,
            json: a.json,
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let body = body.map(|b| b.to_string().into_bytes());
        let a = http::call(&self.at, method, path, &self.token, body.as_deref())?;
        let v: Value = serde_json::from_slice(&a.body).map_err(|_| CliError::NotJson(a.status))?;
        if (200..300).contains(&a.status) {
            return Ok(v);
        }
        let message = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_string();
        Err(CliError::Refused {
            status: a.status,
            message,
        })
    }

    /// `v` as JSON when `--json`, else `human(v)`.
    fn show(&self, v: &Value, human: impl Fn(&Value) -> String) -> String {
        if self.json {
            serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
        } else {
            human(v)
        }
    }
}

fn execute(command: Command) -> Result<String, CliError> {
    match command {
        Command::Keys { action, admin } => keys(Client::new(admin)?, action),
        Command::Usage { by, since, admin } => usage(&Client::new(admin)?, by, since.as_deref()),
        Command::Status { admin } => status(&Client::new(admin)?),
    }
}

/// A cell for an optional JSON string.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn list<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `--expires`: a duration from now (`30d`) or a time as given.
fn expiry(s: &str) -> Result<String, CliError> {
    match humantime::parse_duration(s) {
        Ok(d) => {
            let at = std::time::SystemTime::now() + d;
            Ok(humantime::format_rfc3339_seconds(at).to_string())
        }
        Err(_) if humantime::parse_rfc3339_weak(s).is_ok() => Ok(s.to_string()),
        Err(_) => Err(CliError::Invalid(format!(
            "--expires `{s}`: use a duration (30d, 12h) or an RFC 3339 time"
        ))),
    }
}

fn keys(c: Client, action: KeysAction) -> Result<String, CliError> {
    match action {
        KeysAction::Create {
            name,
            team,
            project,
            models,
            rpm,
            budget,
            period,
            expires,
        } => {
            let mut body =
                json!({"name": name, "team": team, "project": project, "models": models});
            if let Some(e) = expires {
                body["expires"] = Value::from(expiry(&e)?);
            }
            if let Some(rpm) = rpm {
                body["limits"] = json!({ "requests_per_minute": rpm });
            }
            if let Some(limit) = budget {
                let period = period.unwrap_or_else(|| "monthly".into());
                body["budget"] = json!({ "limit": limit, "period": period });
            }
            let v = c.call("POST", "/admin/keys", Some(&body))?;
            Ok(c.show(&v, |v| {
                let mut out = format!(
                    "created key {} (team {})\nsecret: {}\nThis secret is shown once: store it now.\n",
                    cell(&v["name"]),
                    cell(&v["team"]),
                    cell(&v["key"])
                );
                if let Some(rpm) = v["limits"]["requests_per_minute"].as_u64() {
                    out += &format!("limit: {rpm} requests per minute\n");
                }
                if let Some(limit) = v["budget"]["limit"].as_f64() {
                    out += &format!("budget: ${limit} {}\n", cell(&v["budget"]["period"]));
                }
                out
            }))
        }
        KeysAction::List => {
            let v = c.call("GET", "/admin/keys", None)?;
            Ok(c.show(&v, |v| {
                let rows: Vec<Vec<String>> = list(v, "keys")
                    .iter()
                    .map(|k| {
                        let state = if k["revoked"] == true {
                            "revoked"
                        } else {
                            "active"
                        };
                        vec![
                            cell(&k["name"]),
                            cell(&k["team"]),
                            cell(&k["project"]),
                            cell(&k["models"]),
                            cell(&k["expires"]),
                            state.to_string(),
                            cell(&k["source"]),
                            cell(&k["limits"]["requests_per_minute"]),
                            k["budget"]["limit"].as_f64().map_or("-".into(), |l| {
                                format!("${l}/{}", cell(&k["budget"]["period"]))
                            }),
                        ]
                    })
                    .collect();
                table::render(
                    &[
                        "NAME", "TEAM", "PROJECT", "MODELS", "EXPIRES", "STATE", "SOURCE", "RPM",
                        "BUDGET",
                    ],
                    &rows,
                )
            }))
        }
        KeysAction::Rotate { name, grace } => {
            let body = json!({ "grace": grace.unwrap_or_else(|| "1h".into()) });
            let v = c.call("POST", &format!("/admin/keys/{name}/rotate"), Some(&body))?;
            Ok(c.show(&v, |v| {
                format!(
                    "rotated key {}\nsecret: {}\nThis secret is shown once: store it now. The previous secret works until {}.\n",
                    cell(&v["name"]),
                    cell(&v["key"]),
                    cell(&v["previous_key_valid_until"])
                )
            }))
        }
        KeysAction::Revoke { name } => {
            let v = c.call("DELETE", &format!("/admin/keys/{name}"), None)?;
            Ok(c.show(&v, |v| format!("revoked key {}\n", cell(&v["name"]))))
        }
    }
}

fn usage(c: &Client, by: Option<By>, since: Option<&str>) -> Result<String, CliError> {
    let mut query = Vec::new();
    if let Some(s) = since {
        let d = humantime::parse_duration(s)
            .map_err(|e| CliError::Invalid(format!("--since `{s}`: {e} (e.g. 7d, 12h)")))?;
        let from = crate::clock::unix_secs().saturating_sub(d.as_secs());
        query.push(format!("from={from}"));
    }
    if let Some(by) = by {
        let name = by
            .to_possible_value()
            .map(|p| p.get_name().to_string())
            .unwrap_or_default();
        query.push(format!("group_by={name}"));
    }
    let path = match query.is_empty() {
        true => "/admin/usage".to_string(),
        false => format!("/admin/usage?{}", query.join("&")),
    };
    let v = c.call("GET", &path, None)?;
    Ok(c.show(&v, |v| {
        let rows: Vec<Vec<String>> = list(v, "totals")
            .iter()
            .map(|t| {
                vec![
                    cell(&t["group"]),
                    cell(&t["requests"]),
                    cell(&t["prompt_tokens"]),
                    cell(&t["completion_tokens"]),
                    format!("{:.4}", t["cost_usd"].as_f64().unwrap_or(0.0)),
                ]
            })
            .collect();
        let mut out = format!("from {} to {}\n", cell(&v["from"]), cell(&v["to"]));
        out += &table::render(
            &[
                "GROUP",
                "REQUESTS",
                "PROMPT_TOKENS",
                "COMPLETION_TOKENS",
                "COST_USD",
            ],
            &rows,
        );
        out += &format!(
            "month to date ${:.2}, projected ${:.2}\n",
            v["forecast"]["month_to_date_usd"].as_f64().unwrap_or(0.0),
            v["forecast"]["projected_month_usd"].as_f64().unwrap_or(0.0)
        );
        out
    }))
}

fn status(c: &Client) -> Result<String, CliError> {
    let v = c.call("GET", "/admin/status", None)?;
    Ok(c.show(&v, status_text))
}

fn status_text(v: &Value) -> String {
    let w = &v["traffic"]["window"];
    let mut out = format!(
        "status {} · version {} · config {}\nlast 15 min: {} requests, {:.1}% errors, p50 {} ms, p95 {} ms\n\n",
        cell(&v["status"]),
        cell(&v["version"]),
        cell(&v["config_generation"]),
        cell(&w["requests"]),
        w["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
        cell(&w["latency_p50_ms"]),
        cell(&w["latency_p95_ms"]),
    );
    let providers: Vec<Vec<String>> = list(v, "providers")
        .iter()
        .map(|p| {
            let health = if p["status"] == "healthy" {
                "up"
            } else {
                "down"
            };
            vec![
                cell(&p["name"]),
                cell(&p["kind"]),
                health.to_string(),
                cell(&p["consecutive_failures"]),
                cell(&p["last_error"]),
            ]
        })
        .collect();
    out += &table::render(
        &["PROVIDER", "KIND", "HEALTH", "FAILURES", "LAST_ERROR"],
        &providers,
    );
    let mut deployments = Vec::new();
    for m in list(v, "models") {
        for d in list(m, "deployments") {
            deployments.push(vec![
                cell(&m["name"]),
                format!("{}/{}", cell(&d["provider"]), cell(&d["model"])),
                cell(&d["circuit"]),
            ]);
        }
    }
    out += "\n";
    out += &table::render(&["MODEL", "DEPLOYMENT", "CIRCUIT"], &deployments);
    let budgets: Vec<Vec<String>> = list(v, "budgets")
        .iter()
        .map(|b| {
            vec![
                cell(&b["scope"]),
                cell(&b["period"]),
                format!("{:.2}", b["spent_usd"].as_f64().unwrap_or(0.0)),
                format!("{:.2}", b["limit_usd"].as_f64().unwrap_or(0.0)),
                b["resets_at"]
                    .as_u64()
                    .map_or("-".into(), crate::clock::rfc3339),
            ]
        })
        .collect();
    if !budgets.is_empty() {
        out += "\n";
        out += &table::render(
            &["BUDGET", "PERIOD", "SPENT_USD", "LIMIT_USD", "RESETS"],
            &budgets,
        );
    }
    out
}
