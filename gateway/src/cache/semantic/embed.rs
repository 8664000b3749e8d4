//! The semantic cache's embedding call: `POST /v1/embeddings` for `cache.semantic.embedding_model`,
//! run through the gateway's own request phases (authentication, admission, routing, forwarding,
//! ledger row, access log, metrics) exactly as a caller's embeddings request would be, as the
//! caller whose prompt it is (its `authorization` / `x-api-key` are carried over, so the call is
//! billed to it and limited by its key). The request goes over an in-memory HTTP/1.1 pipe to a
//! Pingora session of its own, not over a socket. It owns only that exchange; what the vector is
//! for is [`super`]'s business.

use crate::proxy::Gateway;
use pingora_proxy::{ProxyHttp, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The caller's headers the embedding request carries: who is asking.
const CARRIED: &[&str] = &["authorization", "x-api-key"];

/// Longest answer read back (one vector of a few thousand floats is well under this).
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// How long the lookup waits for a vector before the request goes on as a plain miss.
const EMBED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Gateway {
    /// The embedding of `text` by `model`, asked as the caller of `parent`; `None` when the call
    /// failed (refused, no deployment, timed out): the request is then a plain miss.
    pub(crate) async fn embed_prompt(
        &self,
        parent: &Session,
        request_id: &str,
        model: &str,
        text: &str,
    ) -> Option<Vec<f32>> {
        let body = serde_json::json!({ "model": model, "input": text }).to_string();
        let mut head = format!(
            "POST /v1/embeddings HTTP/1.1\r\nhost: switchyard.internal\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}.embed\r\n",
            body.len()
        );
        for name in CARRIED {
            for v in parent.req_header().headers.get_all(*name) {
                if let Ok(v) = v.to_str() {
                    head.push_str(&format!("{name}: {v}\r\n"));
                }
            }
        }
        head.push_str("\r\n");
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serve = async move {
            let mut s = Session::new_h1(Box::new(server));
            if !matches!(s.read_request().await, Ok(true)) {
                return;
            }
            let mut ctx = self.new_ctx();
            let r = self.request_filter(&mut s, &mut ctx).await;
            self.logging(&mut s, r.as_ref().err().map(|e| e.as_ref()), &mut ctx)
                .await;
        };
        let talk = async {
            client.write_all(head.as_bytes()).await.ok()?;
            client.write_all(body.as_bytes()).await.ok()?;
            let mut out = Vec::new();
            (&mut client)
                .take(MAX_ANSWER)
                .read_to_end(&mut out)
                .await
                .ok()?;
            Some(out)
        };
        let done = tokio::time::timeout(EMBED_TIMEOUT, async { tokio::join!(serve, talk) }).await;
        // The embedding request's logging marked the caller's connection idle: it is not.
        crate::proxy::deadlines::head_complete();
        let answer = done.ok()?.1?;
        let vector = vector_of(&answer);
        if vector.is_none() {
            log::warn!(
                "request {request_id}: the semantic cache's embedding call to {model:?} failed: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            );
        }
        vector
    }
}

/// The first vector of a whole HTTP/1.1 embeddings answer; `None` unless it is a 200 with one.
fn vector_of(answer: &[u8]) -> Option<Vec<f32>> {
    let split = memchr::memmem::find(answer, b"\r\n\r\n")?;
    let status = answer.get(9..12)?;
    if !answer.starts_with(b"HTTP/1.") || status != b"200" {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&answer[split + 4..]).ok()?;
    v.get("data")?
        .get(0)?
        .get("embedding")?
        .as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_with_a_vector_counts() {
        let ok =
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{\"data\":[{\"embedding\":[0.5,-1]}]}";
        assert_eq!(vector_of(ok), Some(vec![0.5, -1.0]));
        let refused = b"HTTP/1.1 403 Forbidden\r\n\r\n{\"data\":[{\"embedding\":[1]}]}";
        assert_eq!(vector_of(refused), None);
        assert_eq!(vector_of(b"HTTP/1.1 200 OK\r\n\r\n{\"data\":[]}"), None);
        assert_eq!(vector_of(b"garbage"), None);
    }
}
