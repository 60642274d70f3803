//! The plugin SDK.
//!
//! Plugin authors implement [`Strategy`] or `Evaluator` (feature `evaluator`) and call
//! [`export_strategy!`] or [`export_evaluator!`] in a `cdylib` crate. The host opens libraries
//! with [`host::PluginLibrary`]. abi_stable is an implementation detail of this crate.
//!
//! Strategy authors also get [`kit`] (sampling, space checks, exact floats, option parsing,
//! saved state) and [`conformance`] (a test harness for the [`Strategy`] contract).
//!
//! The `evaluator` feature adds the evaluator side (`Evaluator`, `EvalRequest`, evaluator
//! handles); it pulls in nas-graph, which a strategy plugin does not need.

pub mod abi;
pub mod conformance;
mod export;
pub mod host;
pub mod kit;
pub mod messages;
pub mod traits;

pub use messages::*;
#[cfg(feature = "evaluator")]
pub use traits::Evaluator;
pub use traits::{PluginError, Strategy};

/// Re-exports used by the export macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_macro_uses_the_symbol_abi_stable_looks_up() {
        assert_eq!(
            crate::export::ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
