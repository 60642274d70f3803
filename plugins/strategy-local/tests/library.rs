//! The strategy through its dynamic library, as the host loads it.

#[test]
fn loads_by_name_and_round_trips_its_state() {
    nas_plugin::conformance::check_library(
        "strategy-local",
        "local",
        serde_json::json!({"step": 0.2}),
        "restarts",
    );
}
