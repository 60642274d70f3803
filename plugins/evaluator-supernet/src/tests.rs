//! The table and the request's path; training and scoring are covered by tests/plugin.rs.

use super::*;
use nas_train::oneshot::Sandwich;

#[test]
fn the_table_is_a_one_shot_config_with_spos() {
    let s = parse_config(&json!({"epochs": 3, "batch": 32, "sandwich": true})).unwrap();
    let cfg = s.training;
    assert_eq!(cfg.method, Method::Spos);
    assert_eq!(
        (cfg.epochs, cfg.batch, cfg.sandwich),
        (3, 32, Sandwich::Both)
    );
    assert_eq!(s.score_images, None);
    assert_eq!(parse_config(&Value::Null).unwrap().training.epochs, 50);
}

#[test]
fn sandwich_reads_a_flag_or_which_ends() {
    let ends = |v: Value| parse_config(&json!({ "sandwich": v })).map(|s| s.training.sandwich);
    assert_eq!(ends(json!(true)).unwrap(), Sandwich::Both);
    assert_eq!(ends(json!(false)).unwrap(), Sandwich::Off);
    assert_eq!(ends(json!("largest")).unwrap(), Sandwich::Largest);
    assert_eq!(ends(json!("both")).unwrap(), Sandwich::Both);
    let e = ends(json!("smallest")).unwrap_err();
    assert!(e.contains("smallest") && e.contains("\"largest\""), "{e}");
}

#[test]
fn score_images_is_a_scoring_setting_not_a_training_one() {
    let s = parse_config(&json!({"epochs": 3, "score_images": 500})).unwrap();
    assert_eq!(s.score_images, Some(500));
    // The training settings (what a checkpoint is compared with) do not hold it.
    assert_eq!(
        s.training,
        parse_config(&json!({"epochs": 3})).unwrap().training
    );
    for bad in [json!(0), json!(2.5), json!("all")] {
        let e = parse_config(&json!({ "score_images": bad })).unwrap_err();
        assert!(
            e.contains("`score_images`") && e.contains("whole number"),
            "{e}"
        );
    }
}

#[test]
fn method_and_unknown_keys_are_errors_naming_them() {
    let e = parse_config(&json!({"method": "darts"})).unwrap_err();
    assert!(e.contains("`method`") && e.contains("spos"), "{e}");
    let e = parse_config(&json!({"epoch": 3})).unwrap_err();
    assert!(e.contains("`epoch`"), "{e}");
    let e = parse_config(&json!({"epochs": 0})).unwrap_err();
    assert!(e.contains("`epochs`"), "{e}");
    let e = parse_config(&json!({"batch": "big"})).unwrap_err();
    assert!(e.contains("supernet evaluator"), "{e}");
}

#[test]
fn values_must_be_option_indices() {
    assert_eq!(path_of(&[0.0, 4.0, 2.0]).unwrap(), vec![0, 4, 2]);
    assert!(path_of(&[0.5]).is_err());
    assert!(path_of(&[-1.0]).is_err());
}
