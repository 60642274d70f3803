//! Study configuration, search spaces, the search loop, storage and the plugin host.

pub mod space;
