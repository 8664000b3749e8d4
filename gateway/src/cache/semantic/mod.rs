//! The semantic cache (`cache.semantic`): after an exact miss on a cached model, the prompt's
//! last turn ([`prompt`]) is embedded with `embedding_model` through the gateway's own
//! embeddings path ([`embed`]: routed, billed and logged like any embeddings call) and looked
//! up in the in-process vector index ([`index`]) of its partition — route, public model, scope
//! (so a team never meets another team's entries) and every other field of the request, which
//! must match exactly. A vector at or above `threshold` answers with the cached answer it points
//! at, `x-switchyard-cache: semantic-hit`; otherwise the vector is noted on the pending miss and
//! indexed once its answer is stored. Not for `/v1/embeddings` (nothing to paraphrase).
//!
//! Metrics: a semantic hit counts in `switchyard_cache_hits_total` (and its saving), after the
//! exact miss it also was counted as. It must not choose deployments or touch upstream I/O.

pub mod embed;
pub mod index;
pub mod prompt;

pub use index::Index;

use super::key;
use crate::forward::Failure;
use crate::proxy::context::RequestCtx;
use crate::proxy::Gateway;
use pingora_proxy::Session;
use switchyard_adapters::openai::ChatRequestFacts;

/// A miss's place in the index, indexed when its answer is stored.
pub struct Noted {
    pub part: index::Part,
    pub vector: Box<[f32]>,
    pub max_entries: usize,
}

impl Gateway {
    /// After an exact miss (a pending entry on `ctx`): answers a near-duplicate from the cache
    /// (`Ok(true)`), or notes the prompt's vector for the store. Nothing without
    /// `cache.semantic`.
    pub(crate) async fn semantic_lookup(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: &[u8],
        facts: &ChatRequestFacts<'_>,
    ) -> Result<bool, Failure> {
        // Only an exact miss goes on (a field check for every other request).
        if ctx.cache_pending.is_none() {
            return Ok(false);
        }
        let (Some(snapshot), Some(model)) = (ctx.snapshot.clone(), ctx.model.clone()) else {
            return Ok(false);
        };
        let settings = &snapshot.state.config.cache;
        let (Some(sem), Some(lookup)) = (
            &settings.semantic,
            ctx.cache_pending.as_ref().map(|p| p.lookup),
        ) else {
            return Ok(false);
        };
        let (Some(route), Some(p)) = (super::route_name(ctx.route), prompt::split(ctx.route, body))
        else {
            return Ok(false);
        };
        let scope = super::scope_id(settings.scope, ctx);
        let part = key::digest_of_map(route, &model.config.name, &scope, &p.rest);
        let id = ctx.request_id.clone();
        let Some(vector) = self
            .embed_prompt(session, &id, &sem.embedding_model, &p.text)
            .await
            .and_then(index::normalise)
        else {
            return Ok(false);
        };
        let now = crate::clock::unix_ms();
        if lookup {
            if let Some((key, similarity)) =
                self.cache
                    .semantic
                    .nearest(&part, &vector, sem.threshold, now)
            {
                if let Some(entry) = self.cache.get(&key, now).await {
                    log::debug!("request {id}: semantic hit at similarity {similarity:.3}");
                    if super::answer(
                        &self.cache,
                        session,
                        ctx,
                        facts,
                        &entry,
                        now,
                        "semantic-hit",
                    )
                    .await?
                    {
                        ctx.cache_pending = None;
                        return Ok(true);
                    }
                }
            }
        }
        if let Some(p) = ctx.cache_pending.as_mut() {
            p.semantic = Some(Noted {
                part,
                vector,
                max_entries: sem.max_entries,
            });
        }
        Ok(false)
    }
}
