//! Throwaway database servers for tests: Debian's PostgreSQL (a fresh cluster in a temp dir, on a
//! free loopback port, trust auth, fsync off) and `redis-server`; `scripts/test.sh` installs both.
//! PostgreSQL refuses to run as root: as root the cluster is made and run by the `postgres`
//! system user the package creates (or `nobody`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL cluster of its own, stopped (and removed) on drop.
pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    user: Option<String>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` (PATH does not have it on Debian).
fn pg_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL (apt-get install postgresql)")
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .expect("initdb under /usr/lib/postgresql/*/bin")
        .1
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    pub fn start() -> Postgres {
        let port = super::free_port();
        let dir = super::scratch_dir("sy-pg");
        let user = is_root().then(|| {
            let ok = |u: &str| {
                Command::new("id")
                    .arg(u)
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            let u = if ok("postgres") { "postgres" } else { "nobody" };
            let status = Command::new("chown")
                .args(["-R", u])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {u} {}", dir.display());
            u.to_string()
        });
        let pg = Postgres {
            port,
            dir,
            bin: pg_bin(),
            user,
        };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "switchyard".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        pg.up();
        pg
    }

    /// One of PostgreSQL's programs, run as the unprivileged user when root.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        }
    }

    /// Runs one of PostgreSQL's programs; it must succeed.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn up(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Turns TLS on with `cert`/`key` (PEM) and lets clients in only over it (every pg_hba.conf
    /// line becomes `hostssl`); restarts the server.
    pub fn require_tls(&self, cert: &Path, key: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let data = self.dir.join("data");
        std::fs::copy(cert, data.join("server.crt")).expect("copy cert");
        std::fs::copy(key, data.join("server.key")).expect("copy key");
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod key");
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
        conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).expect("write conf");
        let hba: String = std::fs::read_to_string(data.join("pg_hba.conf"))
            .expect("hba")
            .lines()
            .filter(|l| l.starts_with("host"))
            .map(|l| format!("hostssl{}\n", &l[4..]))
            .collect();
        std::fs::write(data.join("pg_hba.conf"), hba).expect("write hba");
        if let Some(u) = &self.user {
            let status = Command::new("chown")
                .args(["-R", u])
                .arg(&data)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {u}");
        }
        self.down();
        self.up();
    }

    /// Stops the server (`fast`: open connections are cut, as in an outage).
    pub fn down(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://switchyard@127.0.0.1:{}/postgres", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `sql` with the server's own `psql`-free client: one query, the first column of each
    /// row as text.
    pub async fn query(&self, sql: &str) -> Vec<String> {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test postgres");
        let driver = tokio::spawn(conn);
        let rows = client.simple_query(sql).await.expect("query");
        driver.abort();
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("NULL").to_string())
                }
                _ => None,
            })
            .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
