//! Option parsing; training itself is covered by nas-train and tests/plugin.rs.

use super::*;

#[test]
fn defaults_and_own_keys() {
    let s = parse_config(&Value::Null).unwrap();
    assert_eq!(s.train, TrainConfig::default());
    assert!(!s.keep_checkpoints);
    let s = parse_config(&json!({"epochs": 3, "lr": 0.1, "keep_checkpoints": true})).unwrap();
    assert_eq!((s.train.epochs, s.train.lr), (3, Some(0.1)));
    assert!(s.keep_checkpoints);
    assert!(!s.test_accuracy);
    assert!(
        parse_config(&json!({"test_accuracy": true}))
            .unwrap()
            .test_accuracy
    );
}

#[test]
fn unknown_keys_name_the_key_and_list_the_accepted_ones() {
    let e = parse_config(&json!({"epoch": 3})).unwrap_err();
    assert!(e.contains("unknown option `epoch`"), "{e}");
    assert!(
        e.contains("epochs, batch, optimizer, lr")
            && e.ends_with("keep_checkpoints, test_accuracy"),
        "{e}"
    );
}

#[test]
fn bad_values_are_explained() {
    let e = parse_config(&json!({"optimizer": "adam"})).unwrap_err();
    assert!(e.contains("adam") && e.contains("adamw"), "{e}");
    let e = parse_config(&json!({"momentum": 1.5})).unwrap_err();
    assert!(e.contains("`momentum`"), "{e}");
    let e = parse_config(&json!({"keep_checkpoints": "yes"})).unwrap_err();
    assert!(e.contains("true or false"), "{e}");
    let e = parse_config(&json!({"test_accuracy": 1})).unwrap_err();
    assert!(e.contains("`test_accuracy` must be true or false"), "{e}");
    let e = parse_config(&json!([1])).unwrap_err();
    assert!(e.contains("table"), "{e}");
}

#[test]
fn fidelity_is_epochs_rounded_up() {
    assert_eq!(requested_epochs(None, 10), Ok(10));
    assert_eq!(requested_epochs(Some(3.0), 10), Ok(3));
    assert_eq!(requested_epochs(Some(2.5), 10), Ok(3));
    assert!(requested_epochs(Some(0.0), 10).is_err());
    assert!(requested_epochs(Some(f64::NAN), 10).is_err());
}
