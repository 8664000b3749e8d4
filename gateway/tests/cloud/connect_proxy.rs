//! A local HTTP CONNECT proxy for the egress tests: checks `Proxy-Authorization`, records each
//! tunnel's target, then pipes bytes both ways.

use std::sync::{Arc, Mutex};

/// A local HTTP CONNECT proxy: checks `Proxy-Authorization`, records each tunnel's target,
/// then pipes bytes both ways.
pub async fn connect_proxy(auth: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let tunnels: Arc<Mutex<Vec<String>>> = Arc::default();
    let keep = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tunnels = keep.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(tcp);
                let mut line = String::new();
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut authorised = false;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if h == "\r\n" {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if lower.starts_with("proxy-authorization:") && h.trim_end().ends_with(auth) {
                        authorised = true;
                    }
                }
                let mut tcp = reader.into_inner();
                if !line.starts_with("CONNECT ") || !authorised {
                    let _ = tcp.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n").await;
                    return;
                }
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                };
                tunnels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(target);
                if tcp
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
                }
            });
        }
    });
    (port, tunnels)
}
