//! A throwaway `redis-server` on a loopback port (Debian's; `scripts/test.sh` installs it), no
//! persistence, killed on drop. Shared by the tests that need a real Redis (caches, governance).

use std::time::{Duration, Instant};

pub struct Redis {
    child: std::process::Child,
    pub port: u16,
}

impl Redis {
    /// A server on a free port.
    pub fn start() -> Redis {
        Redis::start_on(super::free_port())
    }

    /// A server on `port` (a restart on the same port keeps the URL the gateway has).
    pub fn start_on(port: u16) -> Redis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
