//! Reads a request body once, refusing it as soon as it passes `server.max_body_bytes` (from
//! `Content-Length` or while reading a chunked body) or takes longer than
//! `server.client_timeouts.body` (408, see [`super::deadlines`]), and answering
//! `Expect: 100-continue`.

use crate::errors::GatewayError;
use crate::forward::Failure;
use bytes::{Bytes, BytesMut};
use pingora_error::ErrorType;
use pingora_proxy::Session;
use std::time::{Duration, Instant};
use switchyard_filters::guard::BodyLimit;

/// Reads the whole request body, refusing it as soon as it passes the limit or `within` (from
/// the call) runs out.
pub async fn read_body(
    session: &mut Session,
    limit: BodyLimit,
    within: Duration,
) -> std::result::Result<Bytes, Failure> {
    let deadline = Instant::now() + within;
    let announced = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = announced {
        limit.check(n).map_err(GatewayError::from)?;
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .write_continue_response()
            .await
            .map_err(Failure::Abort)?;
    }
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total: u64 = 0;
    // HTTP/1: Pingora bounds each body read by the session's read timeout, set here to what is
    // left (no second timer per read); HTTP/2 ignores it, so its reads get a timer of their own.
    let h2 = session.is_http2();
    let read_timeout = session.get_read_timeout();
    // The first read has all of `within` (the clock was just read).
    let mut left = within;
    let read = loop {
        if left.is_zero() {
            break Err(GatewayError::RequestTimeout(within));
        }
        let chunk = if h2 {
            // Dropping a read cut short is fine: the caller is answered 408 and the connection
            // closed, so nothing more is read from it.
            match pingora_timeout::timeout(left, session.read_request_body()).await {
                Ok(chunk) => chunk,
                Err(_) => break Err(GatewayError::RequestTimeout(within)),
            }
        } else {
            session.set_read_timeout(Some(left));
            session.read_request_body().await
        };
        let chunk = match chunk {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break Ok(()),
            Err(e) if e.etype() == &ErrorType::ReadTimedout => {
                break Err(GatewayError::RequestTimeout(within))
            }
            Err(e) => break Err(GatewayError::BodyRead(e.etype().as_str().to_string())),
        };
        total += chunk.len() as u64;
        if let Err(e) = limit.check(total) {
            break Err(e.into());
        }
        match (&mut buf, first.take()) {
            (Some(b), _) => b.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(f)) => {
                let mut b = BytesMut::with_capacity(
                    limit.initial_capacity(announced).max(f.len() + chunk.len()),
                );
                b.extend_from_slice(&f);
                b.extend_from_slice(&chunk);
                buf = Some(b);
            }
        }
        // A body whose length was announced is complete with its last byte: asking again would
        // only be told so (after a clock read and a timeout armed for nothing).
        if session.is_body_done() {
            break Ok(());
        }
        // Checked before each further read as well: a read that finds data waiting never times
        // out.
        left = deadline.saturating_duration_since(Instant::now());
    };
    if !h2 {
        session.set_read_timeout(read_timeout);
    }
    read?;
    Ok(match (buf, first) {
        (Some(b), _) => b.freeze(),
        (None, Some(f)) => f,
        (None, None) => Bytes::new(),
    })
}
