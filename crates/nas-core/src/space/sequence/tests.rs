//! Unit tests of the sequence space.

use nas_graph::{Graph, Op};

use super::*;
use crate::space::{DataDefaults, KindConfig};

fn features() -> SequenceSpaceConfig {
    SequenceSpaceConfig {
        input: Some(vec![6, 3]),
        classes: Some(4),
        widths: vec![8, 12],
        depths: vec![0, 2],
        ..SequenceSpaceConfig::default()
    }
}

fn tokens() -> SequenceSpaceConfig {
    SequenceSpaceConfig {
        input: Some(vec![5]),
        vocab: Some(9),
        ..features()
    }
}

fn ops(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.kind()).collect()
}

/// The values of an arch string (the decoder's own inverse).
fn values(s: &SequenceSpace, arch: &str) -> Vec<f64> {
    s.parse_arch(arch).unwrap()
}

#[test]
fn descriptor_lists_every_block_option_per_position() {
    let s = SequenceSpace::new(&features()).unwrap();
    let names: Vec<&str> = s
        .descriptor
        .choices
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "width",
            "depth",
            "block1",
            "block2",
            "residual",
            "norm",
            "pooling",
            "classifier"
        ]
    );
    let ChoiceKind::Categorical { options } = &s.descriptor.choices[2].kind else {
        panic!()
    };
    // 3 kernels x 3 dilations of conv, gru, lstm, 2 head counts, ffn, identity.
    assert_eq!(options.len(), 9 + 2 + 2 + 1 + 1);
    assert_eq!(options[0], "conv_k3_d1");
    assert_eq!(options[4], "conv_k5_d2");
    assert!(options.contains(&"attention_h4".to_string()));
    assert_eq!(options.last().unwrap(), "identity");
}

#[test]
fn features_decode_to_a_stem_blocks_pool_and_head() {
    let s = SequenceSpace::new(&features()).unwrap();
    let arch =
        "width=8 depth=2 blocks=conv_k3_d2,gru residual=true norm=layer pooling=max classifier=mlp";
    let v = values(&s, arch);
    assert_eq!(s.arch_string(&v), arch);
    let g = s.decode(&v).unwrap();
    let kinds = ops(&g);
    assert_eq!(
        &kinds[..9],
        [
            "Input",
            "Dense",
            "PositionalEncoding",
            "LayerNorm",
            "Transpose",
            "Conv1d",
            "Transpose",
            "Relu",
            "Add"
        ]
    );
    assert_eq!(
        &kinds[kinds.len() - 6..],
        ["Add", "LayerNorm", "TimePool", "Linear", "Relu", "Linear"]
    );
    assert!(kinds.contains(&"Parameter"), "the GRU's hidden weights");
    let shapes = g.shapes().unwrap();
    assert_eq!(shapes[g.output], vec![4]);
    assert_eq!(g.token_vocab(), None);
    // Params: stem 3*8+8, conv 8*8*3+8, GRU 3*(8*8+8) + 8*24 + 24, two LayerNorms in
    // blocks and one final (16 each), head 8*8+8 + 8*4+4.
    let gru = 3 * (8 * 8 + 8) + 8 * 24 + 24;
    let want = (3 * 8 + 8) + (8 * 8 * 3 + 8) + gru + 3 * 16 + (8 * 8 + 8) + (8 * 4 + 4);
    assert_eq!(g.param_count().unwrap(), want as u64);
}

#[test]
fn token_ids_embed_and_mask_attention_and_pooling() {
    let s = SequenceSpace::new(&tokens()).unwrap();
    let arch = "width=12 depth=2 blocks=attention_h4,ffn residual=true norm=none pooling=attention classifier=linear";
    let g = s.decode(&values(&s, arch)).unwrap();
    let kinds = ops(&g);
    assert_eq!(
        &kinds[..4],
        ["Input", "Embedding", "PaddingMask", "PositionalEncoding"]
    );
    assert_eq!(g.token_vocab(), Some(9));
    // The mask feeds the attention's softmax and the pooling's.
    let softmax_with_mask = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Softmax) && n.inputs.get(1) == Some(&2))
        .count();
    assert_eq!(softmax_with_mask, 2);
    assert_eq!(g.shapes().unwrap()[g.output], vec![4]);
    for pooling in ["mean", "max", "last"] {
        let arch = format!(
            "width=8 depth=2 blocks=lstm,conv_k7_d4 residual=false norm=none pooling={pooling} classifier=linear"
        );
        let g = s.decode(&values(&s, &arch)).unwrap();
        let pool = g
            .nodes
            .iter()
            .find(|n| matches!(n.op, Op::TimePool { .. }))
            .unwrap();
        assert_eq!(pool.inputs[1], 2, "{pooling} pooling skips padding");
    }
}

#[test]
fn unused_positions_and_identity_blocks_do_not_change_the_network() {
    let s = SequenceSpace::new(&features()).unwrap();
    let hash = |arch: &str| s.decode(&values(&s, arch)).unwrap().canonical_hash();
    let shallow = hash(
        "width=8 depth=0 blocks=gru,lstm residual=true norm=none pooling=mean classifier=linear",
    );
    assert_eq!(
        shallow,
        hash(
            "width=8 depth=0 blocks=ffn,identity residual=true norm=none pooling=mean classifier=linear"
        )
    );
    assert_eq!(
        shallow,
        hash(
            "width=8 depth=2 blocks=identity,identity residual=true norm=none pooling=mean classifier=linear"
        )
    );
    assert_eq!(
        hash(
            "width=8 depth=2 blocks=gru,identity residual=false norm=none pooling=mean classifier=linear"
        ),
        hash(
            "width=8 depth=2 blocks=identity,gru residual=false norm=none pooling=mean classifier=linear"
        )
    );
    assert_ne!(
        shallow,
        hash(
            "width=8 depth=2 blocks=gru,identity residual=false norm=none pooling=mean classifier=linear"
        )
    );
}

#[test]
fn every_option_decodes_and_round_trips() {
    for config in [
        features(),
        tokens(),
        SequenceSpaceConfig {
            causal: vec![false, true],
            kernels: vec![2, 3],
            dilations: vec![2],
            positional: Positional::Learned,
            ..tokens()
        },
    ] {
        let s = SequenceSpace::new(&config).unwrap();
        let n = s.descriptor.choices.len();
        for (i, c) in s.descriptor.choices.iter().enumerate() {
            for v in 0..c.kind.cardinality().unwrap() {
                let mut values = vec![1.0; n];
                values[i] = v as f64;
                let g = s.decode(&values).unwrap();
                assert_eq!(g.shapes().unwrap()[g.output], vec![4]);
                assert_eq!(s.parse_arch(&s.arch_string(&values)).unwrap(), values);
            }
        }
    }
}

#[test]
fn the_data_fills_input_classes_and_the_vocabulary_of_token_ids() {
    let ids = DataDefaults {
        input: vec![20],
        classes: 3,
        vocab: Some(50),
        padded: false,
        categorical: Vec::new(),
    };
    let empty = SequenceSpaceConfig::default();
    assert!(empty.needs_data());
    let filled = empty.clone().with_data_defaults(&ids);
    assert_eq!(
        (filled.input.clone(), filled.classes, filled.vocab),
        (Some(vec![20]), Some(3), Some(50))
    );
    assert!(!filled.needs_data());
    SequenceSpace::new(&filled).unwrap();
    // Features: no vocabulary; an explicit [T] input still wants one from the data.
    let rows = DataDefaults {
        input: vec![8, 8],
        classes: 10,
        vocab: None,
        padded: false,
        categorical: Vec::new(),
    };
    let filled = empty.with_data_defaults(&rows);
    assert_eq!(
        (filled.input.clone(), filled.vocab),
        (Some(vec![8, 8]), None)
    );
    assert!(!filled.needs_data());
    let own = SequenceSpaceConfig {
        input: Some(vec![20]),
        classes: Some(3),
        ..SequenceSpaceConfig::default()
    };
    assert!(own.needs_data());
    // A feature input of the config's own is not given the data's vocabulary.
    let own_rows = SequenceSpaceConfig {
        input: Some(vec![4, 5]),
        ..SequenceSpaceConfig::default()
    }
    .with_data_defaults(&ids);
    assert_eq!(own_rows.vocab, None);
    SequenceSpace::new(&own_rows).unwrap();
}

#[test]
fn bad_configs_and_archs_are_named() {
    let cases = [
        (
            SequenceSpaceConfig {
                input: Some(vec![3, 8, 8]),
                ..features()
            },
            "`input` is [3, 8, 8]; it must be [T] token ids or [T, F] features",
        ),
        (
            SequenceSpaceConfig {
                vocab: None,
                ..tokens()
            },
            "`vocab` is missing",
        ),
        (
            SequenceSpaceConfig {
                vocab: Some(9),
                ..features()
            },
            "`vocab` is 9, but the input [6, 3] holds features",
        ),
        (
            SequenceSpaceConfig {
                widths: vec![10],
                heads: vec![4],
                ..features()
            },
            "`heads` contains 4, which does not divide width 10",
        ),
        (
            SequenceSpaceConfig {
                kernels: vec![4],
                ..features()
            },
            "`kernels` contains 4, which with dilation 1 cannot pad",
        ),
        (
            SequenceSpaceConfig {
                depths: vec![33],
                ..features()
            },
            "`depths` contains 33; every entry must be between 0 and 32",
        ),
        (
            SequenceSpaceConfig {
                blocks: vec![],
                ..features()
            },
            "`blocks` must list at least one option",
        ),
        (
            SequenceSpaceConfig {
                poolings: vec![Pooling::Max, Pooling::Max],
                ..features()
            },
            "`poolings` lists Max twice",
        ),
        (
            SequenceSpaceConfig {
                ffn_ratio: 0,
                ..features()
            },
            "`ffn_ratio` is 0",
        ),
    ];
    for (config, says) in cases {
        let e = SequenceSpace::new(&config).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    // Knobs of blocks that are not searched are not checked.
    SequenceSpace::new(&SequenceSpaceConfig {
        blocks: vec![SequenceBlock::Gru],
        kernels: vec![4],
        heads: vec![5],
        ..features()
    })
    .unwrap();
    let s = SequenceSpace::new(&features()).unwrap();
    for (arch, says) in [
        ("width=8", "`depth=` is missing"),
        (
            "width=8 depth=2 blocks=gru residual=true norm=none pooling=mean classifier=linear",
            "lists 1 blocks, the space has 2",
        ),
        (
            "width=8 depth=2 blocks=gru,rnn residual=true norm=none pooling=mean classifier=linear",
            "blocks `rnn` is not an option",
        ),
        ("width=8 width=12", "given twice"),
        ("heads=2", "unknown field `heads`"),
    ] {
        let e = s.parse_arch(arch).unwrap_err().to_string();
        assert!(e.contains(says), "{arch}: {e}");
    }
}

#[test]
fn padded_features_are_masked_like_token_ids() {
    let arch = "width=8 depth=2 blocks=attention_h2,gru residual=false norm=none pooling=last classifier=linear";
    // Unpadded features: no mask anywhere.
    let s = SequenceSpace::new(&features()).unwrap();
    let g = s.decode(&values(&s, arch)).unwrap();
    assert!(!ops(&g).contains(&"PaddingMask"));
    // Padded data fills `padding`, and the mask of the input feeds attention and pooling.
    let padded = DataDefaults {
        input: vec![6, 3],
        classes: 4,
        vocab: None,
        padded: true,
        categorical: Vec::new(),
    };
    let config = SequenceSpaceConfig {
        input: None,
        ..features()
    }
    .with_data_defaults(&padded);
    assert!(config.padding);
    let s = SequenceSpace::new(&config).unwrap();
    let g = s.decode(&values(&s, arch)).unwrap();
    let mask = g
        .nodes
        .iter()
        .position(|n| matches!(n.op, Op::PaddingMask))
        .unwrap();
    assert_eq!(g.nodes[mask].inputs, [0]);
    let readers = g
        .nodes
        .iter()
        .filter(|n| n.inputs.get(1) == Some(&mask))
        .map(|n| n.op.kind())
        .collect::<Vec<_>>();
    assert_eq!(readers, ["Softmax", "TimePool"]);
    assert_eq!(g.shapes().unwrap()[g.output], vec![4]);
    // Written out only when on, so studies of unpadded data store what they did before.
    assert_eq!(serde_json::to_value(&config).unwrap()["padding"], true);
    assert!(
        serde_json::to_value(features())
            .unwrap()
            .get("padding")
            .is_none()
    );
    // Token ids have their own padding id.
    let e = SequenceSpace::new(&SequenceSpaceConfig {
        padding: true,
        ..tokens()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("padding") && e.contains("token ids"), "{e}");
}

#[test]
fn dropout_is_a_choice_only_when_configured() {
    // Without `dropouts` the space, its arch strings and its serialized config are as before.
    let plain = SequenceSpace::new(&features()).unwrap();
    assert!(plain.descriptor.choices.iter().all(|c| c.name != "dropout"));
    let arch = "width=8 depth=2 blocks=conv_k3_d1,gru residual=true norm=layer pooling=mean classifier=linear";
    assert_eq!(plain.arch_string(&values(&plain, arch)), arch);
    assert!(plain.parse_arch(&format!("{arch} dropout=0")).is_err());
    assert!(
        !serde_json::to_string(&features())
            .unwrap()
            .contains("dropouts")
    );

    let config = SequenceSpaceConfig {
        dropouts: vec![0.0, 0.25],
        ..features()
    };
    let s = SequenceSpace::new(&config).unwrap();
    assert_eq!(s.descriptor.choices.last().unwrap().name, "dropout");
    let with = format!("{arch} dropout=0.25");
    let v = values(&s, &with);
    assert_eq!(s.arch_string(&v), with);
    // After both blocks and on the pooled features.
    let g = s.decode(&v).unwrap();
    assert_eq!(ops(&g).iter().filter(|&&o| o == "Dropout").count(), 3);
    let none = s.decode(&values(&s, &format!("{arch} dropout=0"))).unwrap();
    assert!(!ops(&none).contains(&"Dropout"));
    let e = s.parse_arch(arch).unwrap_err().to_string();
    assert!(e.contains("`dropout=` is missing"), "{e}");

    let bad = SequenceSpaceConfig {
        dropouts: vec![0.0, 1.0],
        ..features()
    };
    let e = SequenceSpace::new(&bad).unwrap_err().to_string();
    assert!(e.contains("dropouts") && e.contains("[0, 1)"), "{e}");
}
