//! The CLI's HTTP client for the admin API: one blocking HTTP/1.1 exchange per call over a plain
//! TCP connection (the admin listener speaks plain HTTP), `Connection: close`, bounded by a
//! timeout. Owns no command and no output format.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read (the admin API's documents are small).
const MAX_ANSWER: u64 = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid admin URL `{0}`: expected http://HOST:PORT")]
    Url(String),
    #[error("cannot reach the admin API at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("the admin API at {0} failed mid-answer: {1}")]
    Io(String, std::io::Error),
    #[error("the admin API at {0} sent an answer that is not HTTP")]
    Malformed(String),
}

/// Where the admin API listens.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host_port: String,
    prefix: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, HttpError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::Url(url.to_string()))?;
        let (host_port, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host_port.is_empty() {
            return Err(HttpError::Url(url.to_string()));
        }
        let host_port = if host_port.contains(':') && !host_port.ends_with(']') {
            host_port.to_string()
        } else {
            format!("{host_port}:80")
        };
        Ok(Endpoint {
            host_port,
            prefix: prefix.to_string(),
        })
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request; `body` is sent as JSON.
pub fn call(
    at: &Endpoint,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
) -> Result<Answer, HttpError> {
    let who = at.host_port.clone();
    let addr = who
        .to_socket_addrs()
        .map_err(|e| HttpError::Connect(who.clone(), e))?
        .next()
        .ok_or_else(|| HttpError::Url(who.clone()))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| HttpError::Connect(who.clone(), e))?;
    let io = |e| HttpError::Io(who.clone(), e);
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {}{path} HTTP/1.1\r\nhost: {who}\r\nauthorization: Bearer {token}\r\n\
         accept: application/json\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        at.prefix,
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw).map_err(io)?;
    parse_answer(&raw).ok_or(HttpError::Malformed(who))
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Answer { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_answers_parse() {
        let e = Endpoint::parse("http://127.0.0.1:9090/").unwrap();
        assert_eq!(
            (e.host_port.as_str(), e.prefix.as_str()),
            ("127.0.0.1:9090", "")
        );
        let e = Endpoint::parse("http://gw.internal/ops").unwrap();
        assert_eq!(
            (e.host_port.as_str(), e.prefix.as_str()),
            ("gw.internal:80", "/ops")
        );
        assert!(Endpoint::parse("https://x").is_err());
        let a = parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"abcde"[..]));
        let a = parse_answer(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (404, &b"{}"[..]));
    }
}
