//! Sequence classifiers: a stem, a stack of blocks and a pooled classification head, for
//! token ids `[T]` (text) or feature sequences `[T, F]` (sensor data, images read row by row).
//!
//! The stem maps the input to `width` features per step: an `Embedding` of the `vocab` ids
//! (and a `PaddingMask` of them, which attention and pooling read so padding is ignored), or a
//! `Dense` projection of the features; then the positional encoding (`positional`). Each of
//! the `depth` blocks is one of:
//!
//! | option | block |
//! |---|---|
//! | `conv_k{k}_d{d}` (`_causal`) | `Conv1d` over time, kernel `k`, dilation `d` (padded on the left only when causal), then ReLU |
//! | `gru`, `lstm` | a recurrent layer of `width` units, every step's state |
//! | `attention_h{h}` | multi-head self-attention with `h` heads |
//! | `ffn` | the transformer feed-forward block, `ffn_ratio * width` hidden units |
//! | `identity` | nothing |
//!
//! A block reads `LayerNorm(x)` when `norm = "layer"` (pre-norm) and adds its input when
//! `residual = true`; with layer norm a last `LayerNorm` follows the stack. Then the time axis
//! is pooled (`mean`, `max`, `last` step, or `attention`: a softmax over steps of a learned
//! score) and the head classifies (`linear`, or `mlp`: a hidden layer of `width` and ReLU).
//! With `dropouts` other than `[0.0]`, dropout after every block (before the residual add)
//! and on the pooled features is a choice too.
//! Blocks past the chosen depth and `identity` blocks do not change the network (the canonical
//! hash sees the same graph).
//!
//! ```toml
//! [space]
//! kind = "sequence"
//! # input, classes and vocab come from [data] when omitted
//! widths = [32, 64]
//! depths = [1, 2, 3]
//! blocks = ["conv", "gru", "lstm", "attention", "ffn", "identity"]
//! kernels = [3, 5, 7]
//! dilations = [1, 2, 4]
//! causal = [false]          # [false, true] also searches causal convolutions
//! heads = [2, 4]            # attention heads; each must divide every width
//! ffn_ratio = 2
//! residuals = [false, true]
//! norms = ["none", "layer"]
//! poolings = ["mean", "max", "last", "attention"]
//! classifiers = ["linear", "mlp"]
//! positional = "sinusoidal" # or "learned", "none"
//! dropouts = [0.0]          # e.g. [0.0, 0.1, 0.3]: dropout after every block and before the
//!                           # head becomes a choice
//! # padding = true          # [T, F] features whose all-zero steps are padding (masked like
//! #                         # token id 0); from [data] when it has lengths
//! ```

mod config;
mod network;
#[cfg(test)]
mod tests;

use nas_graph::Graph;
use nas_plugin::{Choice, ChoiceKind, SpaceDescriptor};

use config::is_default_dropouts;
pub use config::{
    Classifier, Pooling, Positional, SequenceBlock, SequenceNorm, SequenceSpaceConfig,
};
use network::{Block, Chosen};

use super::{
    DEFAULT_CLASSES, SearchSpace, SpaceError, arch_fields, arch_values, check_kind, check_values,
    checked, config_error,
};

const KIND: &str = "sequence";

/// Input `[T, F]` used when neither the config nor the data set gives one.
const DEFAULT_SEQUENCE_INPUT: [usize; 2] = [16, 16];

/// Most blocks one network may have.
const MAX_DEPTH: usize = 32;
/// Widest model dimension.
const MAX_WIDTH: usize = 4096;
/// Longest sequence (recurrent layers are unrolled, one group of nodes per step).
const MAX_STEPS: usize = 4096;
/// Largest kernel and dilation of a convolution block.
const MAX_KERNEL: usize = 63;
const MAX_DILATION: usize = 64;
/// Largest feed-forward expansion.
const MAX_FFN_RATIO: usize = 16;
/// Largest vocabulary (ids stay exact in float32).
const MAX_VOCAB: usize = nas_data::MAX_VOCAB_SIZE;

/// The sequence space for one config.
#[derive(Clone, Debug)]
pub struct SequenceSpace {
    descriptor: SpaceDescriptor,
    input: Vec<usize>,
    classes: usize,
    /// `Some` for token-id inputs `[T]`.
    vocab: Option<usize>,
    config: SequenceSpaceConfig,
    /// The options of every block position, in descriptor order.
    options: Vec<Block>,
    /// Positions that have a block choice (the largest depth).
    positions: usize,
}

/// Every entry of `list` in `range`, or the error naming `field` and the rule.
fn check_range(
    field: &str,
    list: &[usize],
    range: std::ops::RangeInclusive<usize>,
) -> Result<(), SpaceError> {
    match list.iter().find(|v| !range.contains(v)) {
        Some(v) => Err(config_error(
            KIND,
            field,
            format!(
                "contains {v}; every entry must be between {} and {}",
                range.start(),
                range.end()
            ),
        )),
        None => Ok(()),
    }
}

/// Input shape, class count and vocabulary with the defaults applied and checked.
fn sequence_io(
    config: &SequenceSpaceConfig,
) -> Result<(Vec<usize>, usize, Option<usize>), SpaceError> {
    let input = config
        .input
        .clone()
        .unwrap_or_else(|| DEFAULT_SEQUENCE_INPUT.to_vec());
    if !matches!(input.len(), 1 | 2) || input.contains(&0) {
        return Err(config_error(
            KIND,
            "input",
            format!(
                "is {input:?}; it must be [T] token ids or [T, F] features with no zero, e.g. [100] or [28, 28] (read images row by row with `[data] as_sequence = true`)"
            ),
        ));
    }
    if input[0] > MAX_STEPS {
        return Err(config_error(
            KIND,
            "input",
            format!(
                "has {} steps, above the limit of {MAX_STEPS}; shorten the sequences (e.g. `[data] max_len`)",
                input[0]
            ),
        ));
    }
    let classes = config.classes.unwrap_or(DEFAULT_CLASSES);
    if classes == 0 {
        return Err(config_error(KIND, "classes", "must be at least 1"));
    }
    let vocab = match (input.len(), config.vocab) {
        (1, None) => {
            return Err(config_error(
                KIND,
                "vocab",
                format!(
                    "is missing: the input {input:?} is token ids, which need a vocabulary size; set `vocab` or give a [data] table of token ids"
                ),
            ));
        }
        (1, Some(v)) if !(2..=MAX_VOCAB).contains(&v) => {
            return Err(config_error(
                KIND,
                "vocab",
                format!(
                    "is {v}; it must be between 2 and {MAX_VOCAB} (ids 0 and 1 are padding and unknown)"
                ),
            ));
        }
        (1, v) => v,
        (_, Some(v)) => {
            return Err(config_error(
                KIND,
                "vocab",
                format!(
                    "is {v}, but the input {input:?} holds features, not token ids; remove it (or give `input = [T]`)"
                ),
            ));
        }
        (_, None) => None,
    };
    if config.padding && vocab.is_some() {
        return Err(config_error(
            KIND,
            "padding",
            "is for [T, F] features; token ids mark padding with id 0 already, so remove it",
        ));
    }
    Ok((input, classes, vocab))
}

impl SequenceSpace {
    pub fn new(config: &SequenceSpaceConfig) -> Result<SequenceSpace, SpaceError> {
        check_kind(KIND, &config.kind)?;
        let (input, classes, vocab) = sequence_io(config)?;
        let options = |field: &str, list: &[_]| super::check_options(KIND, field, list);
        options("widths", &config.widths)?;
        check_range("widths", &config.widths, 1..=MAX_WIDTH)?;
        options("depths", &config.depths)?;
        check_range("depths", &config.depths, 0..=MAX_DEPTH)?;
        super::check_options(KIND, "blocks", &config.blocks)?;
        let has = |b: SequenceBlock| config.blocks.contains(&b);
        if has(SequenceBlock::Conv) {
            options("kernels", &config.kernels)?;
            check_range("kernels", &config.kernels, 1..=MAX_KERNEL)?;
            options("dilations", &config.dilations)?;
            check_range("dilations", &config.dilations, 1..=MAX_DILATION)?;
            super::check_options(KIND, "causal", &config.causal)?;
            if config.causal.contains(&false)
                && let Some((k, d)) = config
                    .kernels
                    .iter()
                    .flat_map(|&k| config.dilations.iter().map(move |&d| (k, d)))
                    .find(|&(k, d)| !(d * (k - 1)).is_multiple_of(2))
            {
                return Err(config_error(
                    KIND,
                    "kernels",
                    format!(
                        "contains {k}, which with dilation {d} cannot pad a non-causal convolution evenly on both sides; use odd kernels or `causal = [true]`"
                    ),
                ));
            }
        }
        if has(SequenceBlock::Attention) {
            options("heads", &config.heads)?;
            check_range("heads", &config.heads, 1..=MAX_WIDTH)?;
            for &w in &config.widths {
                if let Some(h) = config.heads.iter().find(|&&h| !w.is_multiple_of(h)) {
                    return Err(config_error(
                        KIND,
                        "heads",
                        format!(
                            "contains {h}, which does not divide width {w}; every head count must divide every width (attention splits the width among the heads)"
                        ),
                    ));
                }
            }
        }
        if has(SequenceBlock::Ffn) && !(1..=MAX_FFN_RATIO).contains(&config.ffn_ratio) {
            return Err(config_error(
                KIND,
                "ffn_ratio",
                format!(
                    "is {}; it must be between 1 and {MAX_FFN_RATIO}",
                    config.ffn_ratio
                ),
            ));
        }
        super::check_options(KIND, "residuals", &config.residuals)?;
        super::check_options(KIND, "norms", &config.norms)?;
        super::check_options(KIND, "poolings", &config.poolings)?;
        super::check_options(KIND, "classifiers", &config.classifiers)?;
        super::check_dropouts(KIND, &config.dropouts)?;

        let mut block_options = Vec::new();
        for &kind in &config.blocks {
            match kind {
                SequenceBlock::Conv => {
                    for &kernel in &config.kernels {
                        for &dilation in &config.dilations {
                            for &causal in &config.causal {
                                block_options.push(Block::Conv {
                                    kernel,
                                    dilation,
                                    causal,
                                });
                            }
                        }
                    }
                }
                SequenceBlock::Gru => block_options.push(Block::Gru),
                SequenceBlock::Lstm => block_options.push(Block::Lstm),
                SequenceBlock::Attention => block_options
                    .extend(config.heads.iter().map(|&heads| Block::Attention { heads })),
                SequenceBlock::Ffn => block_options.push(Block::Ffn),
                SequenceBlock::Identity => block_options.push(Block::Identity),
            }
        }
        let positions = config.depths.iter().copied().max().unwrap_or(0);
        let categorical = |name: String, options: Vec<String>| Choice {
            name,
            kind: ChoiceKind::Categorical { options },
        };
        let numbers = |list: &[usize]| list.iter().map(|v| v.to_string()).collect();
        let mut choices = vec![
            categorical("width".into(), numbers(&config.widths)),
            categorical("depth".into(), numbers(&config.depths)),
        ];
        for p in 1..=positions {
            choices.push(categorical(
                format!("block{p}"),
                block_options.iter().map(|b| b.name()).collect(),
            ));
        }
        choices.push(categorical(
            "residual".into(),
            config.residuals.iter().map(|r| r.to_string()).collect(),
        ));
        choices.push(categorical(
            "norm".into(),
            config.norms.iter().map(|n| n.name().into()).collect(),
        ));
        choices.push(categorical(
            "pooling".into(),
            config.poolings.iter().map(|p| p.name().into()).collect(),
        ));
        choices.push(categorical(
            "classifier".into(),
            config.classifiers.iter().map(|c| c.name().into()).collect(),
        ));
        if !is_default_dropouts(&config.dropouts) {
            choices.push(categorical(
                "dropout".into(),
                config.dropouts.iter().map(|p| p.to_string()).collect(),
            ));
        }
        Ok(SequenceSpace {
            descriptor: SpaceDescriptor {
                kind: KIND.to_string(),
                choices,
            },
            input,
            classes,
            vocab,
            config: config.clone(),
            options: block_options,
            positions,
        })
    }

    /// The network a checked choice vector names.
    fn chosen(&self, values: &[f64]) -> Chosen {
        let at = |i: usize| super::index(values[i]);
        let c = &self.config;
        let tail = 2 + self.positions;
        Chosen {
            width: c.widths[at(0)],
            depth: c.depths[at(1)],
            blocks: (2..tail).map(|i| self.options[at(i)]).collect(),
            residual: c.residuals[at(tail)],
            norm: c.norms[at(tail + 1)],
            pooling: c.poolings[at(tail + 2)],
            classifier: c.classifiers[at(tail + 3)],
            dropout: if self.searches_dropout() {
                c.dropouts[at(tail + 4)]
            } else {
                0.0
            },
        }
    }

    /// Whether dropout is a choice (see [`SequenceSpaceConfig::dropouts`]).
    fn searches_dropout(&self) -> bool {
        !is_default_dropouts(&self.config.dropouts)
    }

    /// ` dropout=p` where dropout is searched, else nothing.
    fn dropout_field(&self, p: f64) -> String {
        if self.searches_dropout() {
            format!(" dropout={p}")
        } else {
            String::new()
        }
    }

    fn example(&self) -> String {
        let c = &self.config;
        let blocks = vec![self.options[0].name(); self.positions].join(",");
        format!(
            "width={} depth={} blocks={blocks} residual={} norm={} pooling={} classifier={}{}",
            c.widths[0],
            c.depths[0],
            c.residuals[0],
            c.norms[0].name(),
            c.poolings[0].name(),
            c.classifiers[0].name(),
            self.dropout_field(c.dropouts[0])
        )
    }
}

impl SearchSpace for SequenceSpace {
    fn descriptor(&self) -> &SpaceDescriptor {
        &self.descriptor
    }

    fn decode(&self, values: &[f64]) -> Result<Graph, SpaceError> {
        check_values(KIND, &self.descriptor, values)?;
        let graph = self
            .build_graph(&self.chosen(values))
            .map_err(|source| SpaceError::Graph {
                kind: KIND.into(),
                source,
            })?;
        checked(KIND, graph)
    }

    fn arch_string(&self, values: &[f64]) -> String {
        if check_values(KIND, &self.descriptor, values).is_err() {
            return format!("invalid sequence choices {values:?}");
        }
        let c = self.chosen(values);
        let blocks: Vec<String> = c.blocks.iter().map(|b| b.name()).collect();
        format!(
            "width={} depth={} blocks={} residual={} norm={} pooling={} classifier={}{}",
            c.width,
            c.depth,
            blocks.join(","),
            c.residual,
            c.norm.name(),
            c.pooling.name(),
            c.classifier.name(),
            self.dropout_field(c.dropout)
        )
    }

    fn parse_arch(&self, arch: &str) -> Result<Vec<f64>, SpaceError> {
        const KEYS: [&str; 8] = [
            "width",
            "depth",
            "blocks",
            "residual",
            "norm",
            "pooling",
            "classifier",
            "dropout",
        ];
        // `dropout` belongs to spaces that search it.
        let keys = &KEYS[..if self.searches_dropout() { 8 } else { 7 }];
        let err = |reason: String| SpaceError::Arch {
            kind: KIND,
            arch: arch.to_string(),
            reason,
            example: self.example(),
        };
        let fields = arch_fields(arch, keys, &err)?;
        arch_values(
            &self.descriptor,
            &fields,
            keys,
            (2, self.positions),
            ("blocks", "block positions"),
            &err,
        )
    }
}
