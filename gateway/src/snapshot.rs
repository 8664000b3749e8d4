//! One config file, live: the routing state, the auth settings with the file's keys, the
//! governance (limits and budgets) and the request and response step chains built from them,
//! published together in one atomic swap. A request loads one [`Snapshot`] in its first phase and
//! holds it to its logging, so it is never routed by one file and authorised by another.
//!
//! [`Live`] is the only place a snapshot is replaced: a reload builds every part beside the old
//! one and publishes them at once, under a writer lock that only publishers take (requests never
//! lock: they `load` an `Arc`). It owns the swap and the generation counter; building each part
//! is its own module's job.

use crate::governance::Governance;
use crate::identity::AuthView;
use crate::proxy::steps::Chains;
use crate::routing::state::State;
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex};

/// Everything one config file decides, as served to a request.
pub struct Snapshot {
    /// Counts published configs from 1 (the file at start); answered as
    /// `x-switchyard-config-generation` and logged with every request.
    pub generation: u64,
    /// Models, providers and their live handles.
    pub state: Arc<State>,
    /// The `auth` section and the index of the keys the file defines.
    pub auth: Arc<AuthView>,
    /// Limits and budgets with their accounts.
    pub governance: Arc<Governance>,
    /// The steps a request and its answer pass, with only what this file configures.
    pub chains: Chains,
}

/// The parts of a new snapshot (its generation is given when published).
pub struct Parts {
    pub state: Arc<State>,
    pub auth: Arc<AuthView>,
    pub governance: Arc<Governance>,
}

/// The live snapshot and the lock that serialises publishers.
pub struct Live {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
}

impl Live {
    /// The first snapshot (generation 1).
    pub fn new(parts: Parts) -> Live {
        Live {
            current: ArcSwap::from_pointee(assemble(1, parts)),
            writer: Mutex::new(()),
        }
    }

    /// The snapshot now live; the caller keeps it as long as it needs.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Builds the next snapshot from the live one with `next` and publishes it in one swap.
    /// Publishers are serialised, so two reloads never interleave their parts.
    pub fn publish<E>(
        &self,
        next: impl FnOnce(&Snapshot) -> Result<Parts, E>,
    ) -> Result<Arc<Snapshot>, E> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current.load_full();
        let parts = next(&old)?;
        let new = Arc::new(assemble(old.generation + 1, parts));
        self.current.store(new.clone());
        Ok(new)
    }
}

impl Live {
    /// Like [`Live::publish`], keeping the generation: for a change that is not the file's (a
    /// runtime key's limits or budget, set through the admin API).
    pub fn republish(&self, next: impl FnOnce(&Snapshot) -> Parts) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current.load_full();
        let parts = next(&old);
        self.current
            .store(Arc::new(assemble(old.generation, parts)));
    }
}

fn assemble(generation: u64, parts: Parts) -> Snapshot {
    let chains = Chains::build(&parts);
    Snapshot {
        generation,
        state: parts.state,
        auth: parts.auth,
        governance: parts.governance,
        chains,
    }
}
