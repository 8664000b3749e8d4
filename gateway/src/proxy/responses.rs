//! The Responses API's gateway side: a create request's stored history expanded before it is
//! inspected and routed (like any chat request from there), its finished response stored after,
//! and the stored-response endpoints (`GET /v1/responses/{id}`, `GET .../input_items`,
//! `DELETE /v1/responses/{id}`), each scoped to the caller's owner.
//!
//! It must not touch forwarding: the conversation logic is [`crate::responses`], the wire format
//! `switchyard_adapters::openai::responses`.

use super::context::RequestCtx;
use super::respond::write_json;
use super::Gateway;
use crate::errors::GatewayError;
use crate::responses::{owner, CreateTurn};
use bytes::Bytes;
use pingora_error::Result;
use pingora_proxy::Session;

impl Gateway {
    /// A create request: its history expanded (see [`crate::responses::Conversations::prepare`]).
    pub(super) async fn responses_turn(
        &self,
        ctx: &RequestCtx,
        body: Bytes,
    ) -> std::result::Result<CreateTurn, GatewayError> {
        self.conversations
            .prepare(body, &owner(ctx.identity.as_deref()), &ctx.request_id)
            .await
    }

    /// Stores a served create request's response (off the request path).
    pub(super) fn responses_done(
        &self,
        ctx: &RequestCtx,
        turn: CreateTurn,
        ttl: std::time::Duration,
    ) {
        self.conversations
            .save(turn, owner(ctx.identity.as_deref()), ttl);
    }

    /// `GET` / `DELETE` on `/v1/responses/{id}[/input_items]`.
    pub(super) async fn stored_response(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        let who = owner(ctx.identity.as_deref());
        let rest = path.trim_start_matches("/v1/responses/");
        let answer = match rest.split_once('/') {
            None if method == http::Method::DELETE => self.conversations.delete(rest, &who).await,
            None => self.conversations.retrieve(rest, &who).await,
            Some((id, "input_items")) if method != http::Method::DELETE => {
                self.conversations
                    .input_items(id, &who, query.as_deref())
                    .await
            }
            Some(_) => Err(GatewayError::UnknownRoute {
                method: method.to_string(),
                path: path.clone(),
            }),
        };
        match answer {
            Ok(v) => {
                let body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
                write_json(session, ctx, 200, body, &[]).await
            }
            Err(e) => super::respond::write_error(session, ctx, &e).await,
        }
    }
}
