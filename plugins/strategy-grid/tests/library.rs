//! The strategy through its dynamic library, as the host loads it.

#[test]
fn loads_by_name_and_round_trips_its_state() {
    nas_plugin::conformance::check_library(
        "strategy-grid",
        "grid",
        serde_json::json!({"grid": 3}),
        "max_size",
    );
}
