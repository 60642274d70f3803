//! Fidelity handling; the table is parsed (and tested) by `nas_train::TrainTable`, training
//! itself is covered by nas-train and tests/plugin.rs.

use super::*;

#[test]
fn fidelity_is_epochs_rounded_up() {
    assert_eq!(requested_epochs(None, 10), Ok(10));
    assert_eq!(requested_epochs(Some(3.0), 10), Ok(3));
    assert_eq!(requested_epochs(Some(2.5), 10), Ok(3));
    assert!(requested_epochs(Some(0.0), 10).is_err());
    assert!(requested_epochs(Some(f64::NAN), 10).is_err());
}
