//! Memory given back after a load. mimalloc keeps the pages a spike freed for reuse and returns
//! them to the OS (purges them) only from inside a later allocator call, once `purge_delay` has
//! passed; a gateway that goes quiet after a spike makes no such call, so the spike's memory stayed
//! resident for good (2,000 streams: 172 of a 174 MiB peak still held 30 s later). A task on the
//! request runtime looks once a second whether requests came in or finished; the first second
//! without either after some did, it asks mimalloc to collect (`mi_collect(true)`: the empty pages of the thread it runs on,
//! then every arena's purgeable ranges, program wide). Purging at every free instead
//! (`MIMALLOC_PURGE_DELAY=0`) gave memory back as well but cost 8 % CPU per request under load
//! (`benches/paired.sh`); this costs a timer a second and one collect per quiet spell.
//!
//! It owns only that task. It counts nothing itself: it reads the activity word of
//! [`crate::proxy::context::InFlight`] (streams still draining after their callers left keep
//! the gateway busy; long ones left open do not, once nothing else moves). With several worker threads the collect runs on one of
//! them; the others' empty pages go back at their next allocation.

use crate::proxy::context::InFlight;
use std::time::Duration;

/// How often the task looks.
const TICK: Duration = Duration::from_secs(1);

/// Starts the task on the current runtime (the request path's), once per process.
pub fn start_once(in_flight: &InFlight) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let in_flight = in_flight.clone();
        tokio::spawn(watch(in_flight));
    });
}

async fn watch(in_flight: InFlight) {
    let mut seen = in_flight.activity();
    let mut busy = false;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = in_flight.activity();
        if now != seen {
            seen = now;
            busy = true;
        } else if busy {
            busy = false;
            collect();
        }
    }
}

/// Asks the allocator to return what it holds free.
fn collect() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time; the
    // process's global allocator is mimalloc (main.rs), whose state it collects.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
