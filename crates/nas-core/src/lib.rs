//! Study configuration, search spaces, the search loop, storage and the plugin host.

pub mod checks;
pub mod config;
mod config_checks;
pub mod evaluate;
pub mod failures;
pub mod final_phase;
pub mod finished;
pub mod interrupt;
pub mod mix;
pub mod objectives;
pub mod oneshot;
pub mod pipeline;
pub mod plugins;
pub mod seeds;
pub mod space;
pub mod storage;
pub mod strategies;
pub mod study;
pub mod study_ref;
pub mod worker;
pub mod workers;
