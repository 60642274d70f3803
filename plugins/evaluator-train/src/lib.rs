//! Train evaluator (work in progress).
