//! The fleet store over TLS: a throwaway PostgreSQL with `ssl = on` that accepts only encrypted
//! connections (`hostssl` in pg_hba.conf), certificates from a test CA made here, and a replica
//! whose store URL says `sslmode=verify-full` with that CA. Then what must be refused: a CA that
//! did not sign the server's certificate, a host name the certificate does not name (accepted by
//! `verify-ca`, which checks the chain only), and a connection without TLS.

mod common;

use common::stores::Postgres;
use common::Gateway;
use std::path::{Path, PathBuf};
use std::process::Output;

const ADMIN: &str = "tls-admin-token-0123456789";

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it, written under `dir`;
/// returns (ca.pem, server.crt, server.key).
fn pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-server.crt")),
        dir.join(format!("{name}-server.key")),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write ca");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    (paths.0, paths.1, paths.2)
}

fn config(url: &str) -> String {
    format!(
        "providers:\n  - {{ name: sim, kind: mock }}\nmodels:\n  - name: chat\n    deployments:\n      - {{ provider: sim, model: mock-1, price: {{ input_per_mtok: 0, output_per_mtok: 1000 }} }}\nauth:\n  api_keys:\n    - {{ name: cfg, key: sk-tls-test-config-key-0001, team: t-cfg }}\nstore: {{ kind: postgres, url: \"{url}\", flush_interval: 50ms }}\n"
    )
}

/// `switchyard migrate` with the store at `url`: connects (over TLS when asked) and migrates.
fn migrate(dir: &Path, url: &str) -> Output {
    let conf = dir.join(format!("migrate-{}.yaml", url.len()));
    std::fs::write(
        &conf,
        format!(
            "server:\n  listen: [\"127.0.0.1:1\"]\n  replica_id: tls\n{}",
            config(url)
        ),
    )
    .expect("conf");
    std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["migrate", "--conf"])
        .arg(&conf)
        .output()
        .expect("switchyard migrate")
}

fn stderr(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One query over the connection `url` asks for; also says whether the session is encrypted.
async fn query(url: &str, sql: &str) -> (bool, String) {
    let c = switchyard::store::tls::parse(url).expect("url");
    let (client, conn) = c.config.connect(c.tls).await.expect("connect over TLS");
    tokio::spawn(conn);
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    let rows = client.simple_query(sql).await.expect("query");
    let first = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default();
    (ssl, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reaches_its_database_over_verified_tls_and_refuses_what_does_not_verify() {
    let pg = Postgres::start();
    let (ca, cert, key) = pki(pg.dir(), "good");
    let (other_ca, _, _) = pki(pg.dir(), "other");
    pg.require_tls(&cert, &key);
    let port = pg.port;
    let base = format!("postgres://switchyard@localhost:{port}/postgres");
    let full = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());

    // Without TLS the server refuses (only `hostssl` lines in pg_hba.conf).
    let plain = migrate(pg.dir(), &format!("{base}?sslmode=disable"));
    assert!(!plain.status.success(), "{}", stderr(&plain));
    assert!(stderr(&plain).contains("pg_hba.conf"), "{}", stderr(&plain));

    // Verified: migrate, then a replica serves a runtime key made through its admin API and
    // its ledger row lands in the database.
    let ok = migrate(pg.dir(), &full);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let gw = Gateway::start(
        &config(&full),
        &format!("  admin_token: {ADMIN}\n  replica_id: tls-a\n"),
    )
    .await;
    let r = gw
        .admin(
            "POST",
            "/admin/keys",
            Some(ADMIN),
            Some(r#"{"name":"over-tls","team":"t-tls"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let secret = r.json()["key"].as_str().expect("key").to_string();
    let auth = format!("Bearer {secret}");
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            Some(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#),
            &[
                ("authorization", auth.as_str()),
                ("x-request-id", "tls-row-1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ssl, n) = query(
            &full,
            "SELECT COUNT(*) FROM ledger WHERE request_id = 'tls-row-1' AND team = 't-tls'",
        )
        .await;
        assert!(ssl, "the test's own connection is encrypted");
        if n == "1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ledger row: {n}\n{}",
            gw.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The replica's own sessions are encrypted too.
    let (_, sessions) = query(
        &full,
        "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'switchyard' AND s.ssl",
    )
    .await;
    assert_ne!(sessions, "0", "no encrypted session of the replica");

    // A CA that did not sign the server's certificate: refused, and said so.
    let wrong = migrate(
        pg.dir(),
        &format!(
            "{base}?sslmode=verify-full&sslrootcert={}",
            other_ca.display()
        ),
    );
    assert!(!wrong.status.success(), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("invalid peer certificate: UnknownIssuer"),
        "{}",
        stderr(&wrong)
    );
    // A name the certificate does not hold: verify-full refuses, verify-ca (chain only) and
    // require (encryption only) connect.
    let elsewhere = format!("postgres://switchyard@db.invalid:{port}/postgres?hostaddr=127.0.0.1");
    let misnamed = migrate(
        pg.dir(),
        &format!(
            "{elsewhere}&sslmode=verify-full&sslrootcert={}",
            ca.display()
        ),
    );
    assert!(!misnamed.status.success(), "{}", stderr(&misnamed));
    assert!(
        stderr(&misnamed).contains("not valid for name \"db.invalid\""),
        "{}",
        stderr(&misnamed)
    );
    let chain = migrate(
        pg.dir(),
        &format!("{elsewhere}&sslmode=verify-ca&sslrootcert={}", ca.display()),
    );
    assert!(chain.status.success(), "{}", stderr(&chain));
    let require = migrate(pg.dir(), &format!("{elsewhere}&sslmode=require"));
    assert!(require.status.success(), "{}", stderr(&require));
}
