//! Answers the gateway writes itself: a whole JSON body with the gateway's headers, and a
//! [`GatewayError`] in the caller's format with its status and headers (`Allow`, `Retry-After`).

use super::context::RequestCtx;
use super::response_headers as rh;
use crate::errors::GatewayError;
use bytes::Bytes;
use pingora_error::Result;
use pingora_proxy::Session;

/// Writes a complete JSON response, keeping the connection open.
pub async fn write_json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Bytes,
    extra: &[(http::HeaderName, String)],
) -> Result<()> {
    let mut resp = rh::head(status, 12 + extra.len())?;
    let h = &mut resp.headers;
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    rh::set_length(h, body.len());
    rh::add_gateway_headers(h, ctx, None)?;
    for (k, v) in extra {
        h.insert(k, rh::value(v)?);
    }
    ctx.status = status;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(rh::finish(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    ctx.completed = true;
    Ok(())
}

/// Answers a gateway error in OpenAI's format.
pub async fn write_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: &GatewayError,
) -> Result<()> {
    ctx.error_code = Some(err.code());
    let mut extra: Vec<(http::HeaderName, String)> = Vec::new();
    if let GatewayError::MethodNotAllowed { allow, .. } = err {
        extra.push((
            http::header::ALLOW,
            if *allow == "POST" {
                "POST"
            } else {
                "GET, HEAD"
            }
            .to_string(),
        ));
    }
    if let Some(secs) = err.retry_after_secs() {
        extra.push((http::header::RETRY_AFTER, secs.to_string()));
    }
    if let Some(retry) = err.should_retry() {
        extra.push((
            http::HeaderName::from_static("x-should-retry"),
            retry.to_string(),
        ));
    }
    if matches!(
        err,
        GatewayError::BodyTooLarge(_) | GatewayError::RequestTimeout(_)
    ) {
        // The rest of an oversized or stalled body is not worth draining: close after answering.
        session.set_keepalive(None);
    }
    let body = err.body_for(ctx.caller, &ctx.request_id);
    write_json(session, ctx, err.status(), body, &extra).await
}
