//! Search spaces: descriptors, arch strings, decoding, config parsing, and the `cell` space
//! checked against real NAS-Bench-201 numbers.

use std::collections::HashSet;

use nas_core::space::{
    CellSpaceConfig, ChainSpaceConfig, DataDefaults, KindConfig, NB201_OPS, SearchSpace,
    SpaceConfig, SpaceError, build_space,
};
use nas_graph::Op;
use nas_plugin::ChoiceKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File<S> {
    space: S,
}

fn cell_space(
    channels: usize,
    n: usize,
    input: [usize; 3],
    classes: usize,
) -> Box<dyn SearchSpace> {
    build_space(&SpaceConfig::Cell(CellSpaceConfig {
        input: Some(input.to_vec()),
        classes: Some(classes),
        channels,
        cells_per_stage: n,
        ..CellSpaceConfig::default()
    }))
    .unwrap()
}

fn default_chain() -> Box<dyn SearchSpace> {
    build_space(&SpaceConfig::Chain(ChainSpaceConfig::default())).unwrap()
}

fn random_values(space: &dyn SearchSpace, rng: &mut ChaCha8Rng) -> Vec<f64> {
    space
        .descriptor()
        .choices
        .iter()
        .map(|c| match &c.kind {
            ChoiceKind::Categorical { options } => rng.random_range(0..options.len()) as f64,
            other => panic!("unexpected choice kind {other:?}"),
        })
        .collect()
}

fn cardinalities(space: &dyn SearchSpace) -> Vec<u64> {
    space
        .descriptor()
        .choices
        .iter()
        .map(|c| c.kind.cardinality().unwrap())
        .collect()
}

#[test]
fn cell_descriptor_is_nb201() {
    let space = cell_space(16, 5, [3, 32, 32], 10);
    let d = space.descriptor();
    assert_eq!(d.kind, "cell");
    let names: Vec<&str> = d.choices.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2"
        ]
    );
    for c in &d.choices {
        assert_eq!(
            c.kind,
            ChoiceKind::Categorical {
                options: NB201_OPS.iter().map(|s| s.to_string()).collect()
            }
        );
    }
    assert_eq!(
        NB201_OPS,
        [
            "none",
            "skip_connect",
            "nor_conv_1x1",
            "nor_conv_3x3",
            "avg_pool_3x3"
        ]
    );
    assert_eq!(d.size(), Some(15625));
}

#[test]
fn chain_descriptor_names_and_cardinalities() {
    let space = default_chain();
    let d = space.descriptor();
    assert_eq!(d.kind, "chain");
    assert_eq!(d.choices.len(), 20);
    for (i, chunk) in d.choices.chunks(4).enumerate() {
        let names: Vec<&str> = chunk.iter().map(|c| c.name.as_str()).collect();
        let s = i + 1;
        assert_eq!(
            names,
            [
                format!("stage{s}.depth"),
                format!("stage{s}.kernel"),
                format!("stage{s}.expansion"),
                format!("stage{s}.width"),
            ]
        );
    }
    assert_eq!(cardinalities(space.as_ref()), [4, 3, 3, 3].repeat(5));
    assert_eq!(
        d.choices[0].kind,
        ChoiceKind::Categorical {
            options: vec!["1".into(), "2".into(), "3".into(), "4".into()]
        }
    );
    assert_eq!(
        d.choices[7].kind,
        ChoiceKind::Categorical {
            options: vec!["20".into(), "24".into(), "32".into()]
        }
    );
}

#[test]
fn random_candidates_round_trip_and_validate() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let spaces = [cell_space(16, 5, [3, 32, 32], 10), default_chain()];
    for space in &spaces {
        for _ in 0..200 {
            let values = random_values(space.as_ref(), &mut rng);
            let arch = space.arch_string(&values);
            assert_eq!(space.parse_arch(&arch).unwrap(), values, "{arch}");
            let graph = space.decode(&values).unwrap();
            graph.validate().unwrap();
            let shapes = graph.shapes().unwrap();
            assert_eq!(shapes[graph.output], vec![10], "{arch}");
        }
    }
}

#[test]
fn chain_arch_string_format() {
    let space = default_chain();
    let values = [1.0, 0.0, 2.0, 1.0].repeat(5);
    let arch = space.arch_string(&values);
    assert_eq!(
        arch,
        "d2-k3-e6-w16|d2-k3-e6-w24|d2-k3-e6-w32|d2-k3-e6-w64|d2-k3-e6-w96"
    );
    for (bad, want) in [
        ("d2-k3-e6-w16", "found 1 `|`-separated stages"),
        (
            "d2-k3-e6|d2-k3-e6-w24|d2-k3-e6-w32|d2-k3-e6-w64|d2-k3-e6-w96",
            "expected 4",
        ),
        (
            "d9-k3-e6-w16|d2-k3-e6-w24|d2-k3-e6-w32|d2-k3-e6-w64|d2-k3-e6-w96",
            "depth 9 is not an option; allowed: [1, 2, 3, 4]",
        ),
        (
            "d2-x3-e6-w16|d2-k3-e6-w24|d2-k3-e6-w32|d2-k3-e6-w64|d2-k3-e6-w96",
            "kernel `x3` is not `k`",
        ),
    ] {
        let e = space.parse_arch(bad).unwrap_err();
        assert!(matches!(e, SpaceError::Arch { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains(want) && msg.contains("expected the form `d1-k3-e3-w12|"),
            "{msg}"
        );
    }
}

#[test]
fn chain_block_structure() {
    // One stage of depth 2, stride 1, width 16 after a 16-channel stem: expansion 1 skips
    // the expand conv, both blocks are residual.
    let text = r#"
        [space]
        kind = "chain"
        input = [1, 8, 8]
        classes = 3
        head_channels = 0
        activation = "silu"
        stages = [{ channels = 16, stride = 1, depths = [2], kernels = [5], expansions = [1], widths = [16] }]
    "#;
    let config: File<ChainSpaceConfig> = toml::from_str(text).unwrap();
    let space = build_space(&SpaceConfig::Chain(config.space)).unwrap();
    assert_eq!(space.descriptor().size(), Some(1));
    let g = space.decode(&[0.0; 4]).unwrap();
    let count = |f: &dyn Fn(&Op) -> bool| g.nodes.iter().filter(|n| f(&n.op)).count();
    assert_eq!(count(&|op| matches!(op, Op::Add)), 2);
    assert_eq!(count(&|op| matches!(op, Op::Silu)), 3); // stem + 2 depthwise
    assert_eq!(
        count(&|op| matches!(
            op,
            Op::Conv2d {
                groups: 16,
                kernel: [5, 5],
                ..
            }
        )),
        2
    );
    assert_eq!(count(&|op| matches!(op, Op::Conv2d { .. })), 5);
    // stem 1*16*9 + BN 32; per block: dw 16*25 + BN 32 + project 256 + BN 32; linear 16*3+3
    assert_eq!(
        g.param_count().unwrap(),
        144 + 32 + 2 * (400 + 32 + 256 + 32) + 51
    );
    assert_eq!(space.arch_string(&[0.0; 4]), "d2-k5-e1-w16");
}

#[test]
fn chain_with_no_keys_but_kind_deserializes_and_decodes() {
    let config: File<ChainSpaceConfig> = toml::from_str("[space]\nkind = \"chain\"\n").unwrap();
    assert_eq!(config.space, ChainSpaceConfig::default());
    let space = build_space(&SpaceConfig::Chain(config.space)).unwrap();
    let values = vec![0.0; space.descriptor().choices.len()];
    let g = space.decode(&values).unwrap();
    assert_eq!(g.input, vec![3, 32, 32]);
    assert_eq!(g.shapes().unwrap()[g.output], vec![10]);

    let config: File<CellSpaceConfig> = toml::from_str("[space]\nkind = \"cell\"\n").unwrap();
    assert_eq!(config.space, CellSpaceConfig::default());
    let space = build_space(&SpaceConfig::Cell(config.space)).unwrap();
    space.decode(&[3.0; 6]).unwrap();
}

#[test]
fn unknown_keys_and_bad_values_are_rejected() {
    let cases = [
        ("kind = \"chain\"\nwidth = 3", "unknown field `width`"),
        (
            "kind = \"chain\"\nactivation = \"gelu\"",
            "unknown variant `gelu`",
        ),
        (
            "kind = \"chain\"\nstages = [{ channels = 16, strides = 2 }]",
            "unknown field `strides`",
        ),
        ("kind = \"chain\"\ndepths = -1", "invalid type"),
    ];
    for (body, want) in cases {
        let text = format!("[space]\n{body}\n");
        let e = toml::from_str::<File<ChainSpaceConfig>>(&text)
            .err()
            .unwrap_or_else(|| panic!("accepted: {body}"))
            .to_string();
        assert!(e.contains(want), "{body}: {e}");
    }
    let e = toml::from_str::<File<CellSpaceConfig>>("[space]\nkind = \"cell\"\nkernels = [3]\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("unknown field `kernels`") && e.contains("line 3"),
        "{e}"
    );
}

#[test]
fn build_errors_say_what_to_fix() {
    let chain = |edit: &dyn Fn(&mut ChainSpaceConfig)| {
        let mut c = ChainSpaceConfig::default();
        edit(&mut c);
        build_space(&SpaceConfig::Chain(c))
            .err()
            .unwrap()
            .to_string()
    };
    let cell = |edit: &dyn Fn(&mut CellSpaceConfig)| {
        let mut c = CellSpaceConfig::default();
        edit(&mut c);
        build_space(&SpaceConfig::Cell(c))
            .err()
            .unwrap()
            .to_string()
    };
    let cases = [
        (
            chain(&|c| c.kernels = vec![3, 4]),
            "`kernels` contains 4; every entry must be an odd",
        ),
        (
            chain(&|c| c.depths = vec![]),
            "`depths` must list at least one",
        ),
        (chain(&|c| c.expansions = vec![3, 3]), "lists 3 twice"),
        (
            chain(&|c| c.stages = vec![]),
            "`stages` must list at least one stage",
        ),
        (
            chain(&|c| c.stages[2].stride = 0),
            "`stages[2].stride` must be at least 1",
        ),
        (
            chain(&|c| c.width_multipliers = vec![-1.0]),
            "positive number",
        ),
        (chain(&|c| c.input = Some(vec![64])), "`input` is [64]"),
        (
            chain(&|c| c.classes = Some(0)),
            "`classes` must be at least 1",
        ),
        (
            chain(&|c| c.kind = "rnn".into()),
            "unknown space kind `rnn`",
        ),
        (
            chain(&|c| c.kind = "mlp".into()),
            "is \"mlp\" but the table was read as a `chain` space",
        ),
        (cell(&|c| c.input = Some(vec![3, 30, 30])), "multiples of 4"),
        (cell(&|c| c.channels = 0), "`channels` must be at least 1"),
        (cell(&|c| c.kind = "chain".into()), "read as a `cell` space"),
    ];
    for (msg, want) in cases {
        assert!(msg.contains(want), "want `{want}` in: {msg}");
    }
    let space = default_chain();
    let e = space.decode(&[0.0; 3]).unwrap_err().to_string();
    assert!(e.contains("3 values but the space has 20 choices"), "{e}");
}

fn data(input: &[usize], classes: usize) -> DataDefaults {
    DataDefaults {
        input: input.to_vec(),
        classes,
        vocab: None,
        padded: false,
        categorical: Vec::new(),
    }
}

#[test]
fn data_defaults_fill_only_missing_fields() {
    let c =
        SpaceConfig::Chain(ChainSpaceConfig::default()).with_data_defaults(&data(&[1, 8, 8], 2));
    let SpaceConfig::Chain(c) = c else { panic!() };
    assert_eq!((c.input, c.classes), (Some(vec![1, 8, 8]), Some(2)));
    let c = CellSpaceConfig {
        classes: Some(100),
        ..CellSpaceConfig::default()
    }
    .with_data_defaults(&data(&[3, 16, 16], 120));
    assert_eq!((c.input, c.classes), (Some(vec![3, 16, 16]), Some(100)));
    // An 8x8 single-channel dataset works with the chain defaults.
    let space = build_space(&SpaceConfig::Chain(
        ChainSpaceConfig::default().with_data_defaults(&data(&[1, 8, 8], 10)),
    ))
    .unwrap();
    space
        .decode(&(0..20).map(|i| (i % 3) as f64).collect::<Vec<_>>())
        .unwrap();
}

/// All six op indices of the cell space, in descriptor order.
fn all_cells() -> impl Iterator<Item = Vec<f64>> {
    (0..15625usize).map(|mut n| {
        (0..6)
            .map(|_| {
                let v = n % 5;
                n /= 5;
                v as f64
            })
            .collect()
    })
}

#[test]
fn all_15625_cells_have_distinct_strings_that_parse_back() {
    let space = cell_space(16, 5, [3, 32, 32], 10);
    let mut seen = HashSet::new();
    for values in all_cells() {
        let arch = space.arch_string(&values);
        assert_eq!(space.parse_arch(&arch).unwrap(), values);
        assert!(seen.insert(arch));
    }
    assert_eq!(seen.len(), 15625);
}

#[test]
fn all_15625_cells_decode_with_the_nb201_parameter_formula() {
    // Fixed part 73,306; each 3x3 conv edge adds 243,040 and each 1x1 conv edge 28,000 over
    // the 15 cells (C=16, N=5, 10 classes), see tests/data provenance.
    let space = cell_space(16, 5, [3, 32, 32], 10);
    for values in all_cells() {
        let n = |op: f64| values.iter().filter(|&&v| v == op).count() as u64;
        let g = space.decode(&values).unwrap();
        assert_eq!(
            g.param_count().unwrap(),
            73_306 + 243_040 * n(3.0) + 28_000 * n(2.0),
            "{}",
            space.arch_string(&values)
        );
    }
}

/// NASLib op indices of the data file's keys.
const NASLIB_OPS: [&str; 5] = [
    "skip_connect",
    "none",
    "nor_conv_3x3",
    "nor_conv_1x1",
    "avg_pool_3x3",
];

/// A data-file key `(t0, .., t5)` as an NB201 string `|t0~0|+|t1~0|t3~1|+|t2~0|t4~1|t5~2|`.
fn naslib_key_to_arch(key: &str) -> String {
    let t: Vec<&str> = key
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(|s| NASLIB_OPS[s.trim().parse::<usize>().unwrap()])
        .collect();
    assert_eq!(t.len(), 6, "{key}");
    format!(
        "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|",
        t[0], t[1], t[3], t[2], t[4], t[5]
    )
}

#[test]
fn cell_matches_nb201_params_and_flops_from_real_data() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/nb201_zero_cost_subset.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The file holds Python's non-standard `-Infinity` (some nwot scores); not needed here.
    let text = text
        .replace("-Infinity", "null")
        .replace("Infinity", "null");
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (dataset, input, classes) in [
        ("cifar10", [3, 32, 32], 10),
        ("cifar100", [3, 32, 32], 100),
        ("ImageNet16-120", [3, 16, 16], 120),
    ] {
        let space = cell_space(16, 5, input, classes);
        let archs = data[dataset].as_object().unwrap();
        assert!(archs.len() >= 724, "{dataset}: {} archs", archs.len());
        let (mut params_exact, mut flops_exact) = (0, 0);
        let (mut max_dev, mut worst) = (0.0f64, String::new());
        for (key, entry) in archs {
            let arch = naslib_key_to_arch(key);
            let values = space.parse_arch(&arch).unwrap();
            assert_eq!(space.arch_string(&values), arch);
            let g = space.decode(&values).unwrap();

            let want_params = (entry["params"]["score"].as_f64().unwrap() * 1e6).round() as u64;
            let params = g.param_count().unwrap();
            assert_eq!(params, want_params, "{dataset} {key} {arch}");
            params_exact += 1;

            let want_flops = entry["flops"]["score"].as_f64().unwrap() * 1e6;
            let got = g.flops_naslib().unwrap() as f64;
            assert!(
                (got - want_flops).abs() < 1.0,
                "{dataset} {key} {arch}: file {want_flops}, ours {got}"
            );
            flops_exact += 1;

            let dev = (g.flops().unwrap() as f64 - want_flops).abs() / want_flops;
            if dev > max_dev {
                (max_dev, worst) = (dev, arch);
            }
        }
        eprintln!(
            "{dataset}: {params_exact}/{} params exact, {flops_exact} FLOPs exact in the file's \
             convention; NB201-convention flops() deviates from the file by at most {:.2} % ({worst})",
            archs.len(),
            100.0 * max_dev
        );
    }
}

#[test]
fn cell_hash_sees_through_none_and_skip_edges() {
    let space = cell_space(16, 5, [3, 32, 32], 10);
    let hash = |arch: &str| {
        space
            .decode(&space.parse_arch(arch).unwrap())
            .unwrap()
            .canonical_hash()
    };
    // Both compute one 3x3 conv of the cell input.
    let a = hash("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|");
    let b = hash("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|");
    let c = hash("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn chain_doc_example_parses() {
    let text = r#"
        [space]
        kind = "chain"
        activation = "silu"
        kernels = [3, 5]
        stages = [
          { channels = 16, stride = 1, depths = [1] },
          { channels = 32, stride = 2 },
          { channels = 64, stride = 2, widths = [48, 64, 96] },
        ]
    "#;
    let config: File<ChainSpaceConfig> = toml::from_str(text).unwrap();
    let space = build_space(&SpaceConfig::Chain(config.space)).unwrap();
    assert_eq!(
        cardinalities(space.as_ref()),
        [1, 2, 3, 3, 4, 2, 3, 3, 4, 2, 3, 3]
    );
    let arch = "d1-k5-e3-w12|d4-k3-e6-w40|d2-k5-e4-w96";
    let g = space.decode(&space.parse_arch(arch).unwrap()).unwrap();
    assert_eq!(g.shapes().unwrap()[g.output], vec![10]);
}

/// The `cell` space as configs/tables/nb201-digits.toml builds it on the digits data.
fn digits_table_space(cells_per_stage: usize) -> Box<dyn SearchSpace> {
    cell_space(4, cells_per_stage, [1, 8, 8], 10)
}

#[test]
fn cell_hash_merges_the_same_isomorphs_as_the_expanded_definition() {
    // The shipped nb201-digits table keys its 5,155 rows by these hashes.
    let space = digits_table_space(1);
    let mut distinct = HashSet::new();
    for values in all_cells() {
        let g = space.decode(&values).unwrap();
        let hash = g.canonical_hash();
        assert_eq!(
            hash,
            nas_graph::testing::expanded_canonical_hash(&g),
            "{}",
            space.arch_string(&values)
        );
        distinct.insert(hash);
    }
    assert_eq!(distinct.len(), 5155);
}

#[test]
fn deep_skip_heavy_cell_networks_hash() {
    // 50 cells per stage add each stage's input 2^50 or 4^50 times; listing every copy of it
    // ran out of memory.
    let space = digits_table_space(50);
    let hash = |space: &dyn SearchSpace, arch: &str| {
        space
            .decode(&space.parse_arch(arch).unwrap())
            .unwrap()
            .canonical_hash()
    };
    let all_skip = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|";
    // Node 1 only feeds `none` edges, so its op does not matter: each cell doubles its input.
    let doubling_pool =
        "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|skip_connect~2|";
    let doubling_conv =
        "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|skip_connect~2|";
    let skip_heavy = "|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|skip_connect~2|";
    let deep = [all_skip, doubling_pool, skip_heavy].map(|a| hash(space.as_ref(), a));
    assert_eq!(hash(space.as_ref(), doubling_conv), deep[1]);
    assert_eq!(deep.iter().collect::<HashSet<_>>().len(), 3);
    let shallower = digits_table_space(49);
    for (arch, h) in [all_skip, doubling_pool, skip_heavy].iter().zip(&deep) {
        assert_ne!(&hash(shallower.as_ref(), arch), h, "{arch}");
    }
    // The deepest allowed network hashes too.
    let deepest = digits_table_space(100);
    assert_ne!(hash(deepest.as_ref(), all_skip), deep[0]);
}

#[test]
fn absurd_space_sizes_are_refused_with_the_limit() {
    let cell = |edit: &dyn Fn(&mut CellSpaceConfig)| {
        let mut c = CellSpaceConfig::default();
        edit(&mut c);
        build_space(&SpaceConfig::Cell(c))
            .err()
            .map(|e| e.to_string())
    };
    let chain = |edit: &dyn Fn(&mut ChainSpaceConfig)| {
        let mut c = ChainSpaceConfig::default();
        edit(&mut c);
        build_space(&SpaceConfig::Chain(c))
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(cell(&|c| c.cells_per_stage = 100), None);
    assert_eq!(cell(&|c| c.channels = 1024), None);
    let cases = [
        (
            cell(&|c| c.cells_per_stage = 50_000),
            "`cells_per_stage` is 50000, above the limit of 100",
        ),
        (
            cell(&|c| c.channels = 1025),
            "`channels` is 1025, above the limit of 1024",
        ),
        (
            chain(&|c| c.depths = vec![2, 1000]),
            "`depths` contains 1000; every entry must be between 1 and 100",
        ),
        (
            chain(&|c| c.stages[1].depths = Some(vec![101])),
            "`stages[1].depths` contains 101",
        ),
        (
            chain(&|c| c.stem_channels = 1 << 20),
            "`stem_channels` is 1048576, above the limit of 4096",
        ),
        (
            chain(&|c| c.head_channels = 5000),
            "`head_channels` is 5000, above the limit of 4096",
        ),
        (
            chain(&|c| c.stages[2].channels = 10_000),
            "`stages[2].channels` is 10000, above the limit of 4096",
        ),
        (
            chain(&|c| c.stages[0].widths = Some(vec![16, 9000])),
            "`stages[0].widths` contains 9000; every entry must be between 1 and 4096",
        ),
        (
            chain(&|c| c.width_multipliers = vec![1.0, 1000.0]),
            "`width_multipliers` make `stages[0]` 16000 channels wide",
        ),
    ];
    for (msg, want) in cases {
        let msg = msg.expect("refused");
        assert!(msg.contains(want), "want `{want}` in: {msg}");
    }
}
