//! Search spaces: each turns a choice vector into an IR graph.
//!
//! A space is configured by the `[space]` table of a study file. Its `kind` selects the
//! config struct ([`CellSpaceConfig`], [`ChainSpaceConfig`], [`MlpSpaceConfig`],
//! [`SequenceSpaceConfig`]); [`build_space`] checks the knobs and returns a [`SearchSpace`],
//! whose descriptor is all that strategies see. What the config leaves out of the input
//! (shape, classes, vocabulary) comes from the data set, as [`DataDefaults`].
//!
//! Adding a kind: a module here whose config struct implements [`KindConfig`], and one line in
//! the `space_kinds!` registry below. The study config, its checks on resume and the CLI
//! find the kind through the registry.

mod cell;
mod chain;
mod costs;
mod mlp;
mod sequence;

use nas_graph::{Graph, GraphError, Supernet};
use nas_plugin::{ChoiceKind, SpaceDescriptor};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use cell::{
    CellSpace, CellSpaceConfig, NB201_EDGES, NB201_OPS, nb201_arch_string, parse_nb201_arch,
};
pub use chain::{Activation, ChainSpace, ChainSpaceConfig, ChainStage};
pub use costs::{network_cost, option_costs};
pub use mlp::{MlpActivation, MlpNorm, MlpSpace, MlpSpaceConfig};
pub use sequence::{
    Classifier, Pooling, Positional, SequenceBlock, SequenceNorm, SequenceSpace,
    SequenceSpaceConfig,
};

/// Declares the kinds: the [`SpaceConfig`] enum, its dispatch to each kind's [`KindConfig`],
/// and [`SPACE_KINDS`].
macro_rules! space_kinds {
    ($($(#[$doc:meta])* $variant:ident($config:ty)),+ $(,)?) => {
        /// The `[space]` table, one variant per kind.
        #[derive(Clone, Debug, PartialEq)]
        pub enum SpaceConfig {
            $($(#[$doc])* $variant($config),)+
        }

        $(impl From<$config> for SpaceConfig {
            fn from(config: $config) -> SpaceConfig {
                SpaceConfig::$variant(config)
            }
        })+

        /// Every space kind, in the order messages list them.
        pub const SPACE_KINDS: &[SpaceKind] = &[$(SpaceKind {
            name: <$config as KindConfig>::KIND,
            parse: parse_kind::<$config>,
        },)+];

        impl SpaceConfig {
            /// The space kind (`cell`, `chain`, ...).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(SpaceConfig::$variant(_) => <$config as KindConfig>::KIND,)+
                }
            }

            /// `input` and `classes` as the config gives them (`None`: from the dataset).
            pub fn io(&self) -> (&Option<Vec<usize>>, &Option<usize>) {
                match self {
                    $(SpaceConfig::$variant(c) => c.io(),)+
                }
            }

            /// Whether the data set would fill in something the config leaves out.
            pub fn needs_data(&self) -> bool {
                match self {
                    $(SpaceConfig::$variant(c) => c.needs_data(),)+
                }
            }

            fn fill_from_data(&mut self, data: &DataDefaults) {
                match self {
                    $(SpaceConfig::$variant(c) => c.fill_from_data(data),)+
                }
            }

            /// The table as JSON (stored with a study and compared on resume).
            pub fn to_json(&self) -> serde_json::Value {
                match self {
                    $(SpaceConfig::$variant(c) => serde_json::to_value(c),)+
                }
                .expect("space configs serialize")
            }

            /// Checks the knobs and builds the space.
            fn build(&self) -> Result<Box<dyn SearchSpace>, SpaceError> {
                match self {
                    $(SpaceConfig::$variant(c) => c.build(),)+
                }
            }
        }
    };
}

// The registry of space kinds: one line per kind, `Variant(ConfigStruct)`.
space_kinds! {
    /// `kind = "cell"`: the NAS-Bench-201 cell.
    Cell(CellSpaceConfig),
    /// `kind = "chain"`: a MobileNet-like chain of stages.
    Chain(ChainSpaceConfig),
    /// `kind = "mlp"`: multi-layer perceptrons (tabular data).
    Mlp(MlpSpaceConfig),
    /// `kind = "sequence"`: stacks of sequence blocks (token ids or feature sequences).
    Sequence(SequenceSpaceConfig),
}

/// Input shape `[C, H, W]` used when neither the config nor the dataset gives one.
pub const DEFAULT_INPUT: [usize; 3] = [3, 32, 32];

/// Number of classes used when neither the config nor the dataset gives one.
pub const DEFAULT_CLASSES: usize = 10;

/// A search space: a descriptor for strategies and a decoder from choice vectors to networks.
pub trait SearchSpace: Send + Sync {
    fn descriptor(&self) -> &SpaceDescriptor;
    /// Decodes a choice vector (already range-checked against the descriptor) into a network.
    fn decode(&self, values: &[f64]) -> Result<Graph, SpaceError>;
    /// Human-readable architecture string; for `cell` the canonical NB201 string.
    fn arch_string(&self, values: &[f64]) -> String;
    /// Inverse of `arch_string` (users pass such strings with `--arch`).
    fn parse_arch(&self, arch: &str) -> Result<Vec<f64>, SpaceError>;
    /// The one-shot supernet holding every candidate (each categorical choice a set of mixed
    /// edges), with an auxiliary skip input on every mixed edge when `aux_skip` (DARTS-).
    fn supernet(&self, aux_skip: bool) -> Result<Supernet, SpaceError> {
        let _ = aux_skip;
        Err(SpaceError::NoSupernet {
            kind: self.descriptor().kind.clone(),
        })
    }
}

/// What is wrong with a space config, a choice vector or an architecture string.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpaceError {
    #[error("unknown space kind `{kind}`; set `[space] kind` to one of: {}", kind_names().join(", "))]
    UnknownKind { kind: String },
    #[error("[space] (kind = \"{kind}\"): `{field}` {reason}")]
    Config {
        kind: &'static str,
        field: String,
        reason: String,
    },
    #[error(
        "the `{kind}` space has no one-shot supernet yet; one-shot methods (darts, gdas, \
         darts-minus, drnas, spos) need `[space] kind = \"cell\"` or `\"chain\"`"
    )]
    NoSupernet { kind: String },
    #[error(
        "the `{kind}` space's supernet has no auxiliary skip connections, which `darts-minus` \
         adds; use `darts`, `drnas` or `gdas`, or the `supernet` evaluator (SPOS)"
    )]
    NoAuxSkip { kind: &'static str },
    #[error("invalid choice vector for the `{kind}` space: {reason}")]
    Values { kind: &'static str, reason: String },
    #[error(
        "cannot parse `{arch}` as a `{kind}` architecture: {reason}; expected the form `{example}`"
    )]
    Arch {
        kind: &'static str,
        arch: String,
        reason: String,
        example: String,
    },
    #[error(
        "the `{kind}` space built an invalid network ({source}); check the space's `input` shape and strides"
    )]
    Graph {
        kind: String,
        #[source]
        source: GraphError,
    },
}

/// What a data set tells a space where its `[space]` table is silent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDefaults {
    /// One sample as a network takes it (see [`nas_data::Dataset::sample_shape`]): `[C, H,
    /// W]`, `[F, 1, 1]`, `[T, F]` or `[T]`.
    pub input: Vec<usize>,
    pub classes: usize,
    /// For token ids: how many ids there are, an embedding table's rows.
    pub vocab: Option<usize>,
    /// Float sequences whose all-zero steps are padding (loaded with lengths).
    pub padded: bool,
    /// For tables: the features holding category codes, to embed (see
    /// [`nas_data::Dataset::categorical`]).
    pub categorical: Vec<nas_data::CategoricalFeature>,
}

impl DataDefaults {
    pub fn of(data: &nas_data::SplitDataset) -> DataDefaults {
        DataDefaults {
            input: data.sample_shape(),
            classes: data.classes(),
            vocab: data.vocab_size(),
            padded: data.is_padded(),
            categorical: data.data.categorical.clone(),
        }
    }
}

/// What the engine needs of a kind's `[space]` config struct.
pub trait KindConfig: Serialize + DeserializeOwned + Into<SpaceConfig> {
    /// The `kind = "..."` value.
    const KIND: &'static str;
    /// `input` and `classes` as the config gives them (`None`: from the dataset).
    fn io(&self) -> (&Option<Vec<usize>>, &Option<usize>);
    fn io_mut(&mut self) -> (&mut Option<Vec<usize>>, &mut Option<usize>);
    /// Checks the knobs and builds the space.
    fn build(&self) -> Result<Box<dyn SearchSpace>, SpaceError>;

    /// Fills `input` and `classes` from the dataset where the config left them out (a kind
    /// that reads more of the data, such as a vocabulary, fills that too).
    fn fill_from_data(&mut self, data: &DataDefaults) {
        let (input, classes) = self.io_mut();
        input.get_or_insert_with(|| data.input.clone());
        classes.get_or_insert(data.classes);
    }

    /// Whether [`KindConfig::fill_from_data`] would fill anything in.
    fn needs_data(&self) -> bool {
        let (input, classes) = self.io();
        input.is_none() || classes.is_none()
    }

    /// The config with what it leaves out taken from the dataset.
    fn with_data_defaults(mut self, data: &DataDefaults) -> Self
    where
        Self: Sized,
    {
        self.fill_from_data(data);
        self
    }
}

/// One entry of the registry.
pub struct SpaceKind {
    /// The `kind = "..."` value.
    pub name: &'static str,
    /// Reads the `[space]` table out of a whole study file, strictly (unknown keys are
    /// errors); error spans point into that text, so messages keep their line and column.
    pub parse: fn(file_text: &str) -> Result<SpaceConfig, toml::de::Error>,
}

/// The `[space]` table of a study file read as kind `C` (the other tables are not looked at).
fn parse_kind<C: KindConfig>(file_text: &str) -> Result<SpaceConfig, toml::de::Error> {
    #[derive(serde::Deserialize)]
    struct File<C> {
        space: C,
    }
    let file: File<C> = toml::from_str(file_text)?;
    Ok(file.space.into())
}

/// The registry entry of a `kind` value.
pub fn find_kind(name: &str) -> Option<&'static SpaceKind> {
    SPACE_KINDS.iter().find(|k| k.name == name)
}

/// The `kind` values a `[space]` table may have.
pub fn kind_names() -> Vec<&'static str> {
    SPACE_KINDS.iter().map(|k| k.name).collect()
}

impl SpaceConfig {
    /// A `[space]` table stored as JSON ([`SpaceConfig::to_json`]: a study's record, a
    /// table's `space`), read back as strictly as from a study file.
    pub fn from_json(value: &serde_json::Value) -> Result<SpaceConfig, String> {
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or("the space has no `kind`")?;
        let entry = find_kind(kind).ok_or_else(|| format!("unknown space kind `{kind}`"))?;
        let text = toml::to_string(&serde_json::json!({ "space": value }))
            .map_err(|e| format!("the space is not a TOML table: {e}"))?;
        (entry.parse)(&text).map_err(|e| e.to_string())
    }

    /// The config with what it leaves out (`input`, `classes`, a vocabulary) taken from the
    /// dataset.
    pub fn with_data_defaults(mut self, data: &DataDefaults) -> SpaceConfig {
        self.fill_from_data(data);
        self
    }
}

/// Checks a space config and builds the space.
pub fn build_space(config: &SpaceConfig) -> Result<Box<dyn SearchSpace>, SpaceError> {
    config.build()
}

/// The config's `kind` must name the struct it was parsed into.
fn check_kind(expected: &'static str, kind: &str) -> Result<(), SpaceError> {
    if kind == expected {
        return Ok(());
    }
    if find_kind(kind).is_some() {
        return Err(config_error(
            expected,
            "kind",
            format!("is \"{kind}\" but the table was read as a `{expected}` space"),
        ));
    }
    Err(SpaceError::UnknownKind {
        kind: kind.to_string(),
    })
}

fn config_error(kind: &'static str, field: &str, reason: impl Into<String>) -> SpaceError {
    SpaceError::Config {
        kind,
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Input shape and class count with the defaults applied; spaces here need `[C, H, W]` images.
fn image_io(
    kind: &'static str,
    input: &Option<Vec<usize>>,
    classes: Option<usize>,
) -> Result<(Vec<usize>, usize), SpaceError> {
    let input = input.clone().unwrap_or_else(|| DEFAULT_INPUT.to_vec());
    if input.len() != 3 || input.contains(&0) {
        return Err(config_error(
            kind,
            "input",
            format!(
                "is {input:?}; it must be an image shape [channels, height, width] with no zero, e.g. [3, 32, 32]"
            ),
        ));
    }
    let classes = classes.unwrap_or(DEFAULT_CLASSES);
    if classes == 0 {
        return Err(config_error(kind, "classes", "must be at least 1"));
    }
    Ok((input, classes))
}

/// A non-empty option list without duplicates (`field` of a `kind` space).
/// Dropout probabilities (the `dropouts` list of a space): options, each in [0, 1).
fn check_dropouts(kind: &'static str, dropouts: &[f64]) -> Result<(), SpaceError> {
    check_options(kind, "dropouts", dropouts)?;
    match dropouts
        .iter()
        .find(|p| !(p.is_finite() && (0.0..1.0).contains(*p)))
    {
        Some(p) => Err(config_error(
            kind,
            "dropouts",
            format!("contains {p}; a dropout probability is in [0, 1)"),
        )),
        None => Ok(()),
    }
}

/// Whether an option's name and an arch string's value name the same option; numbers compare
/// as numbers (`0.10` is `0.1`).
fn same_option(option: &str, value: &str) -> bool {
    option == value
        || matches!((option.parse::<f64>(), value.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

fn check_options<T: PartialEq + std::fmt::Debug>(
    kind: &'static str,
    field: &str,
    list: &[T],
) -> Result<(), SpaceError> {
    if list.is_empty() {
        return Err(config_error(kind, field, "must list at least one option"));
    }
    if let Some(v) = list
        .iter()
        .enumerate()
        .find_map(|(i, v)| list[..i].contains(v).then_some(v))
    {
        return Err(config_error(
            kind,
            field,
            format!("lists {v:?} twice; remove the duplicate"),
        ));
    }
    Ok(())
}

/// Categorical option index of a checked value.
fn index(value: f64) -> usize {
    value as usize
}

/// Rejects choice vectors that do not fit the descriptor (decode must never panic).
fn check_values(
    kind: &'static str,
    descriptor: &SpaceDescriptor,
    values: &[f64],
) -> Result<(), SpaceError> {
    descriptor
        .check(values)
        .map_err(|reason| SpaceError::Values { kind, reason })
}

/// The fields of a `key=value key=value ...` architecture string (the `mlp` and `sequence`
/// forms): every key among `keys`, each at most once; `err` turns a reason into the error.
fn arch_fields<'a>(
    arch: &'a str,
    keys: &[&str],
    err: &dyn Fn(String) -> SpaceError,
) -> Result<std::collections::BTreeMap<&'a str, &'a str>, SpaceError> {
    let mut fields = std::collections::BTreeMap::new();
    for token in arch.split_whitespace() {
        let (key, value) = token
            .split_once('=')
            .ok_or_else(|| err(format!("`{token}` is not `key=value`")))?;
        if !keys.contains(&key) {
            return Err(err(format!("unknown field `{key}`")));
        }
        if fields.insert(key, value).is_some() {
            return Err(err(format!("`{key}` is given twice")));
        }
    }
    Ok(fields)
}

/// Field `key` of [`arch_fields`]' result, which must be there.
fn arch_field<'a>(
    fields: &std::collections::BTreeMap<&str, &'a str>,
    key: &str,
    err: &dyn Fn(String) -> SpaceError,
) -> Result<&'a str, SpaceError> {
    fields
        .get(key)
        .copied()
        .ok_or_else(|| err(format!("`{key}=` is missing")))
}

/// The value (option index) of categorical choice `choice` whose option `value` names (see
/// [`same_option`]); `key` names the field in the error.
fn option_value(
    descriptor: &SpaceDescriptor,
    choice: usize,
    key: &str,
    value: &str,
    err: &dyn Fn(String) -> SpaceError,
) -> Result<f64, SpaceError> {
    let ChoiceKind::Categorical { options } = &descriptor.choices[choice].kind else {
        unreachable!(
            "choice {choice} of the {} space is categorical",
            descriptor.kind
        )
    };
    options
        .iter()
        .position(|o| same_option(o, value))
        .map(|i| i as f64)
        .ok_or_else(|| {
            err(format!(
                "{key} `{value}` is not an option; allowed: {options:?}"
            ))
        })
}

/// The values of a `key=value ...` architecture whose fields `keys` each take one categorical
/// choice, in order, except `keys[list]`, a comma-separated list taking `count` choices (its
/// error names them `nouns`: the list's items and the space's choices, e.g. "layers", "width
/// choices").
fn arch_values(
    descriptor: &SpaceDescriptor,
    fields: &std::collections::BTreeMap<&str, &str>,
    keys: &[&str],
    (list, count): (usize, usize),
    nouns: (&str, &str),
    err: &dyn Fn(String) -> SpaceError,
) -> Result<Vec<f64>, SpaceError> {
    let mut values = field_values(descriptor, fields, &keys[..list], 0, err)?;
    let items = (list, count);
    values.extend(list_values(
        descriptor, fields, keys[list], items, nouns, err,
    )?);
    let rest = &keys[list + 1..];
    values.extend(field_values(descriptor, fields, rest, list + count, err)?);
    Ok(values)
}

/// The values of list field `key` (comma-separated options, one per choice): item `i` takes
/// categorical choice `first + i`, and the list must have `count` items (the error names
/// them `items` and the space's `count` choices `choices`, e.g. "layers", "width choices").
fn list_values(
    descriptor: &SpaceDescriptor,
    fields: &std::collections::BTreeMap<&str, &str>,
    key: &str,
    (first, count): (usize, usize),
    (items_noun, choices): (&str, &str),
    err: &dyn Fn(String) -> SpaceError,
) -> Result<Vec<f64>, SpaceError> {
    let items: Vec<&str> = arch_field(fields, key, err)?.split(',').collect();
    if items.len() != count {
        return Err(err(format!(
            "`{key}` lists {} {items_noun}, the space has {count} {choices}",
            items.len()
        )));
    }
    (items.iter().enumerate())
        .map(|(i, item)| option_value(descriptor, first + i, key, item, err))
        .collect()
}

/// The values of single-option fields `keys`, which take categorical choices `first`,
/// `first + 1`, ... in that order.
fn field_values(
    descriptor: &SpaceDescriptor,
    fields: &std::collections::BTreeMap<&str, &str>,
    keys: &[&str],
    first: usize,
    err: &dyn Fn(String) -> SpaceError,
) -> Result<Vec<f64>, SpaceError> {
    (keys.iter().enumerate())
        .map(|(i, key)| {
            let value = arch_field(fields, key, err)?;
            option_value(descriptor, first + i, key, value, err)
        })
        .collect()
}

/// Validates a decoded graph so a bad space config surfaces here, not in an evaluator.
fn checked(kind: &'static str, graph: Graph) -> Result<Graph, SpaceError> {
    graph.validate().map_err(|source| SpaceError::Graph {
        kind: kind.into(),
        source,
    })?;
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config;

    /// A study file without its `[space]` table (10 lines).
    const REST: &str = "[study]\nname = \"t\"\n[budget]\ntrials = 1\n[[strategy]]\nplugin = \"random\"\n[[evaluator]]\nplugin = \"cost\"\n[objective]\nminimize = \"params\"\n";

    #[test]
    fn every_registered_kind_reads_builds_and_stores_its_table() {
        for kind in SPACE_KINDS {
            let text = format!("{REST}[space]\nkind = \"{}\"\n", kind.name);
            let config = config::parse(Path::new("s.toml"), &text).unwrap();
            assert_eq!(config.space.kind(), kind.name);
            assert_eq!(config.space.to_json()["kind"], kind.name);
            build_space(&config.space).unwrap();
            assert!(config.space.needs_data());
            let filled = config.space.clone().with_data_defaults(&DataDefaults {
                input: vec![1, 8, 8],
                classes: 3,
                vocab: None,
                padded: false,
                categorical: Vec::new(),
            });
            assert_eq!(filled.io(), (&Some(vec![1, 8, 8]), &Some(3)));
            assert!(!filled.needs_data());
        }
    }

    #[test]
    fn space_errors_keep_their_line_and_column() {
        let text = format!("{REST}[space]\nkind = \"chain\"\nwidth = 3\n");
        let e = config::parse(Path::new("s.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:13:1: unknown field `width`"), "{e}");
    }

    #[test]
    fn of_two_mistakes_the_one_earlier_in_the_file_is_reported() {
        let space = "[space]\nkind = \"cell\"\nchannels = \"8\"\n";
        let late = format!("{REST}{space}[runtime]\nthreads = \"two\"\n");
        let e = config::parse(Path::new("s.toml"), &late)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:13:12: "), "{e}");
        let after = format!("{space}{}", REST.replace("trials = 1", "trials = \"one\""));
        let e = config::parse(Path::new("s.toml"), &after)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:3:12: "), "{e}");
        let before = format!("{}{space}", REST.replace("trials = 1", "trials = \"one\""));
        let e = config::parse(Path::new("s.toml"), &before)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:4:10: "), "{e}");
    }

    #[test]
    fn an_unknown_kind_lists_the_registered_ones() {
        let text = format!("{REST}[space]\nkind = \"mlpp\"\n");
        let e = config::parse(Path::new("s.toml"), &text)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "s.toml:12:8: unknown space kind `mlpp`, expected one of: cell | chain | mlp | sequence"
        );
    }
}
