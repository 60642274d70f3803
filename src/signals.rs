//! Signals: SIGINT/SIGTERM stop a search cleanly, a closed output pipe ends the program quietly.
//!
//! The one module of the program allowed unsafe code: std has no API to set a signal's
//! disposition, and each call below is async-signal-safe.
#![allow(unsafe_code)]

/// First SIGINT/SIGTERM: the study stops proposing, finishes and stores the trials in
/// evaluation, and the command says how to resume. A second one ends the program at once;
/// everything finished is already stored and the unfinished trial is re-run on resume.
pub fn stop_searches_on_interrupt() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only does async-signal-safe work (an atomic swap, write(2),
        // signal(2), raise(3)).
        unsafe {
            libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t);
        }
    }
}

extern "C" fn on_stop_signal(signal: libc::c_int) {
    if nas_core::interrupt::request(signal) {
        // SAFETY: async-signal-safe calls; the default action ends the process.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        return;
    }
    let message: &[u8] = b"\nstopping: finishing the trial(s) in evaluation and storing them \
        (interrupt again to stop at once; an unfinished trial is re-run on resume)\n";
    // SAFETY: write(2) on stderr is async-signal-safe; a failed write changes nothing.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
    }
}

/// `nas status | head`: when the reader goes away, end quietly as other command-line tools
/// do, instead of failing (and panicking) on every later write.
pub fn end_quietly_on_closed_pipe() {
    // SAFETY: restoring a signal's default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
