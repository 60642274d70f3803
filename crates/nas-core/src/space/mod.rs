//! Search spaces: each turns a choice vector into an IR graph.
//!
//! A space is configured by the `[space]` table of a study file. Its `kind` selects the
//! config struct ([`CellSpaceConfig`], [`ChainSpaceConfig`]); [`build_space`] checks the
//! knobs and returns a [`SearchSpace`], whose descriptor is all that strategies see.

mod cell;
mod chain;

use nas_graph::{Graph, GraphError};
use nas_plugin::SpaceDescriptor;

pub use cell::{
    CellSpace, CellSpaceConfig, NB201_EDGES, NB201_OPS, nb201_arch_string, parse_nb201_arch,
};
pub use chain::{Activation, ChainSpace, ChainSpaceConfig, ChainStage};

/// The `kind` values a `[space]` table may have.
pub const SPACE_KINDS: &[&str] = &["cell", "chain"];

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
}

/// What is wrong with a space config, a choice vector or an architecture string.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpaceError {
    #[error("unknown space kind `{kind}`; set `[space] kind` to one of: {}", SPACE_KINDS.join(", "))]
    UnknownKind { kind: String },
    #[error("[space] (kind = \"{kind}\"): `{field}` {reason}")]
    Config {
        kind: &'static str,
        field: String,
        reason: String,
    },
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
        kind: &'static str,
        #[source]
        source: GraphError,
    },
}

/// The `[space]` table, one variant per kind.
#[derive(Clone, Debug, PartialEq)]
pub enum SpaceConfig {
    Cell(CellSpaceConfig),
    Chain(ChainSpaceConfig),
}

impl SpaceConfig {
    /// The space kind (`cell`, `chain`).
    pub fn kind(&self) -> &'static str {
        match self {
            SpaceConfig::Cell(_) => "cell",
            SpaceConfig::Chain(_) => "chain",
        }
    }

    /// Fills `input` and `classes` from the dataset where the config left them out.
    pub fn with_data_defaults(self, input: &[usize], classes: usize) -> SpaceConfig {
        match self {
            SpaceConfig::Cell(c) => SpaceConfig::Cell(c.with_data_defaults(input, classes)),
            SpaceConfig::Chain(c) => SpaceConfig::Chain(c.with_data_defaults(input, classes)),
        }
    }
}

/// Checks a space config and builds the space.
pub fn build_space(config: &SpaceConfig) -> Result<Box<dyn SearchSpace>, SpaceError> {
    match config {
        SpaceConfig::Cell(c) => Ok(Box::new(CellSpace::new(c)?)),
        SpaceConfig::Chain(c) => Ok(Box::new(ChainSpace::new(c)?)),
    }
}

/// The config's `kind` must name the struct it was parsed into.
fn check_kind(expected: &'static str, kind: &str) -> Result<(), SpaceError> {
    if kind == expected {
        return Ok(());
    }
    if SPACE_KINDS.contains(&kind) {
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

/// Validates a decoded graph so a bad space config surfaces here, not in an evaluator.
fn checked(kind: &'static str, graph: Graph) -> Result<Graph, SpaceError> {
    graph
        .validate()
        .map_err(|source| SpaceError::Graph { kind, source })?;
    Ok(graph)
}
