//! A stop request from outside the search (the CLI sets it on SIGINT/SIGTERM): the study stops
//! proposing, finishes the trials in evaluation, stores them, and returns.
//!
//! Only an atomic store happens when the request is made, so it may be made from a signal
//! handler.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal number that asked to stop; 0 while none has.
static REQUESTED: AtomicI32 = AtomicI32::new(0);

/// Asks every running study to stop after its trials in evaluation; returns whether a stop
/// had already been asked for.
pub fn request(signal: i32) -> bool {
    REQUESTED.swap(signal, Ordering::SeqCst) != 0
}

/// The signal that asked to stop, if any.
pub fn requested() -> Option<i32> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The stop reason a study reports.
pub fn stop_reason(signal: i32) -> String {
    format!("interrupted by {}", signal_name(signal))
}

pub fn signal_name(signal: i32) -> String {
    match signal {
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        1 => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}
