//! Search spaces: each turns a choice vector into an IR graph.
