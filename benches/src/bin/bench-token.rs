//! `bench-token`: writes a JWKS document and prints an RS256 JWT signed by its key, so the load
//! bench can measure JWT authentication against a real JWKS (served by a local static server).
//!
//! bench-token --jwks-out DIR/jwks.json [--issuer https://bench/] [--audience switchyard]

use clap::Parser;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_filters::auth::jwt::testing::{TestKey, RSA_A};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    jwks_out: PathBuf,
    #[arg(long, default_value = "https://bench/")]
    issuer: String,
    #[arg(long, default_value = "switchyard")]
    audience: String,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let key = TestKey::rsa(RSA_A);
    let jwks = serde_json::json!({"keys": [key.jwk("bench-1")]});
    std::fs::write(&args.jwks_out, jwks.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({"iss": args.issuer, "aud": args.audience, "sub": "bench-user",
        "exp": now + 3600, "team": "bench"});
    println!("{}", key.sign("RS256", Some("bench-1"), &claims));
    Ok(())
}
