//! Study configuration, search spaces, the search loop, storage and the plugin host.

pub mod config;
pub mod evaluate;
pub mod final_phase;
pub mod mix;
pub mod objectives;
pub mod pipeline;
pub mod plugins;
pub mod seeds;
pub mod space;
pub mod storage;
pub mod study;
pub mod workers;
