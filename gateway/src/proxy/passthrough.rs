//! The Pingora phases of a `passthrough[]` route. Unlike inference routes (answered inside
//! `request_filter`, "pattern C"), a pass-through request goes through Pingora's own upstream
//! pipeline: `request_filter` authenticates and admits it and returns `Ok(false)`, then
//! `upstream_peer` picks the provider, `upstream_request_filter` rewrites the head
//! ([`crate::passthrough::rewrite_head`]), and Pingora streams the request body up and the
//! answer down chunk by chunk with bounded buffers (its body filters are left as they are, so
//! nothing is held: a 200 MB upload costs what a few chunks cost). Here: admission, the peer,
//! the answer's head (status recorded, the gateway's headers added) and an upstream failure
//! answered in the caller's format. Must not read or hold a body.

use super::context::RequestCtx;
use super::respond::write_error;
use super::response_headers as rh;
use super::steps::BodyStep;
use super::Gateway;
use crate::errors::GatewayError;
use crate::passthrough::{self, Target};
use crate::snapshot::Snapshot;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

impl Gateway {
    /// Runs what applies to a pass-through request once its caller is known: ledger tags from
    /// `x-switchyard-tags`, then limits and budgets with the route's `per_request` price
    /// reserved. `Err` is the answer.
    pub(super) async fn passthrough_admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
    ) -> std::result::Result<(), GatewayError> {
        let Some((route, _)) = passthrough::route_of(ctx) else {
            return Err(unknown_route(session));
        };
        let estimate = route.per_request_nanos;
        for step in &snapshot.chains.body {
            match step {
                // Keys' `models` lists name models; a pass-through path is none of them.
                BodyStep::ModelAccess => {}
                BodyStep::Tags => ctx.tags = super::ledger_tags(session, None),
                BodyStep::Admission => self.admit(ctx, snapshot, estimate).await?,
            }
        }
        // A silent uploader cannot hold the connection: each read of its body is bounded.
        session.set_read_timeout(Some(self.client_timeouts.body));
        Ok(())
    }

    /// The provider of the request's route, as a Pingora peer.
    pub(super) async fn passthrough_peer(&self, ctx: &RequestCtx) -> Result<Box<HttpPeer>> {
        let (route, runtime) = passthrough::route_of(ctx)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no passthrough route"))?;
        let target = Target::of(route)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "not an HTTP provider"))?;
        let addr = runtime
            .provider
            .address()
            .await
            .map_err(|e| Error::explain(ErrorType::ConnectError, e))?;
        Ok(passthrough::peer(&target, &runtime.provider, addr))
    }

    /// The upstream head: see [`passthrough::rewrite_head`].
    pub(super) fn passthrough_request(
        &self,
        req: &mut RequestHeader,
        ctx: &RequestCtx,
    ) -> Result<()> {
        let (route, _) = passthrough::route_of(ctx)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no passthrough route"))?;
        let target = Target::of(route)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "not an HTTP provider"))?;
        passthrough::rewrite_head(req, &target, ctx)
    }

    /// The answer's head: its status recorded (it decides the charge), the gateway's headers
    /// added; everything the provider sent is kept.
    pub(super) fn passthrough_response(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        let Some(hit) = ctx.passthrough.as_mut() else {
            return Ok(());
        };
        hit.upstream_status = Some(status);
        ctx.status = status;
        resp.insert_header(rh::X_REQUEST_ID.clone(), rh::value(&ctx.request_id)?)?;
        resp.insert_header(
            rh::X_SWITCHYARD_CONFIG_GENERATION.clone(),
            rh::number(ctx.generation()),
        )?;
        if let Some((route, _)) = passthrough::route_of(ctx) {
            resp.insert_header(
                rh::X_SWITCHYARD_PROVIDER.clone(),
                rh::value(&route.provider.name)?,
            )?;
        }
        if let Some(a) = &ctx.admission {
            let mut extra = http::HeaderMap::new();
            a.headers.write(&mut extra);
            for (name, value) in extra {
                if let Some(name) = name {
                    resp.insert_header(name, value)?;
                }
            }
        }
        Ok(())
    }

    /// A pass-through request that failed before its answer's head reached the caller: 502
    /// (504 on a timeout) in the caller's format. Returns the status written (0: none).
    pub(super) async fn passthrough_failed(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> u16 {
        let provider = passthrough::route_of(ctx)
            .map(|(r, _)| r.provider.name.clone())
            .unwrap_or_default();
        let err = GatewayError::PassthroughUpstream {
            provider,
            timeout: matches!(
                e.etype(),
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            ),
            reason: e.etype().as_str().to_string(),
        };
        match write_error(session, ctx, &err).await {
            Ok(()) => err.status(),
            Err(_) => 0,
        }
    }
}

fn unknown_route(session: &Session) -> GatewayError {
    let req = session.req_header();
    GatewayError::UnknownRoute {
        method: req.method.to_string(),
        path: req.uri.path().to_string(),
    }
}
