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
//! ```

use nas_graph::sequence::{feed_forward, gru, lstm, self_attention};
use nas_graph::{Graph, GraphBuilder, GraphError, NodeId, Op, TimePoolKind};
use nas_plugin::{Choice, ChoiceKind, SpaceDescriptor};
use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_CLASSES, DataDefaults, SearchSpace, SpaceError, check_kind, check_values, checked,
    config_error,
};

const KIND: &str = "sequence";

/// Input `[T, F]` used when neither the config nor the data set gives one.
pub const DEFAULT_SEQUENCE_INPUT: [usize; 2] = [16, 16];

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

/// `[space] kind = "sequence"`. Every knob is optional.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SequenceSpaceConfig {
    pub kind: String,
    /// One sample: `[T]` token ids or `[T, F]` features; from the data set when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<usize>>,
    /// Number of classes; from the data set when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// For token ids: how many ids there are (the embedding's rows, padding and unknown
    /// included); from the data set when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<usize>,
    /// Model dimensions (features per step inside the stack).
    #[serde(default = "default_widths")]
    pub widths: Vec<usize>,
    /// Numbers of blocks.
    #[serde(default = "default_depths")]
    pub depths: Vec<usize>,
    /// The block kinds each position chooses from.
    #[serde(default = "default_blocks")]
    pub blocks: Vec<SequenceBlock>,
    /// Kernel sizes of convolution blocks.
    #[serde(default = "default_kernels")]
    pub kernels: Vec<usize>,
    /// Dilations of convolution blocks.
    #[serde(default = "default_dilations")]
    pub dilations: Vec<usize>,
    /// Whether convolutions are causal (output step `t` sees inputs up to `t` only).
    #[serde(default = "default_causal")]
    pub causal: Vec<bool>,
    /// Head counts of attention blocks.
    #[serde(default = "default_heads")]
    pub heads: Vec<usize>,
    /// Hidden units of feed-forward blocks, per model dimension.
    #[serde(default = "default_ffn_ratio")]
    pub ffn_ratio: usize,
    /// Whether blocks add their input.
    #[serde(default = "default_residuals")]
    pub residuals: Vec<bool>,
    #[serde(default = "default_norms")]
    pub norms: Vec<SequenceNorm>,
    /// How the time axis is reduced before the head.
    #[serde(default = "default_poolings")]
    pub poolings: Vec<Pooling>,
    /// Classification heads.
    #[serde(default = "default_classifiers")]
    pub classifiers: Vec<Classifier>,
    /// Position information added after the stem (not searched).
    #[serde(default = "default_positional")]
    pub positional: Positional,
}

/// The block kinds of `blocks`; `conv` and `attention` expand into one option per kernel,
/// dilation and causality, and per head count.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SequenceBlock {
    Conv,
    Gru,
    Lstm,
    Attention,
    Ffn,
    Identity,
}

/// Normalization of each block's input.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SequenceNorm {
    None,
    /// `LayerNorm` over the features of each step.
    Layer,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Mean,
    Max,
    /// The last step (the last token before padding).
    Last,
    /// A softmax over steps of a learned linear score, then the weighted mean.
    Attention,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Classifier {
    /// One `Linear` to the classes.
    Linear,
    /// `Linear(width) -> ReLU -> Linear(classes)`.
    Mlp,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Positional {
    None,
    /// The fixed sine and cosine table of "Attention is all you need".
    Sinusoidal,
    /// A learned `[T, width]` table.
    Learned,
}

fn default_widths() -> Vec<usize> {
    vec![32, 64]
}

fn default_depths() -> Vec<usize> {
    vec![1, 2, 3]
}

fn default_blocks() -> Vec<SequenceBlock> {
    vec![
        SequenceBlock::Conv,
        SequenceBlock::Gru,
        SequenceBlock::Lstm,
        SequenceBlock::Attention,
        SequenceBlock::Ffn,
        SequenceBlock::Identity,
    ]
}

fn default_kernels() -> Vec<usize> {
    vec![3, 5, 7]
}

fn default_dilations() -> Vec<usize> {
    vec![1, 2, 4]
}

fn default_causal() -> Vec<bool> {
    vec![false]
}

fn default_heads() -> Vec<usize> {
    vec![2, 4]
}

fn default_ffn_ratio() -> usize {
    2
}

fn default_residuals() -> Vec<bool> {
    vec![false, true]
}

fn default_norms() -> Vec<SequenceNorm> {
    vec![SequenceNorm::None, SequenceNorm::Layer]
}

fn default_poolings() -> Vec<Pooling> {
    vec![
        Pooling::Mean,
        Pooling::Max,
        Pooling::Last,
        Pooling::Attention,
    ]
}

fn default_classifiers() -> Vec<Classifier> {
    vec![Classifier::Linear, Classifier::Mlp]
}

fn default_positional() -> Positional {
    Positional::Sinusoidal
}

impl Default for SequenceSpaceConfig {
    fn default() -> Self {
        SequenceSpaceConfig {
            kind: KIND.to_string(),
            input: None,
            classes: None,
            vocab: None,
            widths: default_widths(),
            depths: default_depths(),
            blocks: default_blocks(),
            kernels: default_kernels(),
            dilations: default_dilations(),
            causal: default_causal(),
            heads: default_heads(),
            ffn_ratio: default_ffn_ratio(),
            residuals: default_residuals(),
            norms: default_norms(),
            poolings: default_poolings(),
            classifiers: default_classifiers(),
            positional: default_positional(),
        }
    }
}

impl super::KindConfig for SequenceSpaceConfig {
    const KIND: &'static str = KIND;

    fn io(&self) -> (&Option<Vec<usize>>, &Option<usize>) {
        (&self.input, &self.classes)
    }

    fn io_mut(&mut self) -> (&mut Option<Vec<usize>>, &mut Option<usize>) {
        (&mut self.input, &mut self.classes)
    }

    fn build(&self) -> Result<Box<dyn SearchSpace>, SpaceError> {
        Ok(Box::new(SequenceSpace::new(self)?))
    }

    /// Also the vocabulary, when the input (given or filled in) is the data set's token ids.
    fn fill_from_data(&mut self, data: &DataDefaults) {
        self.input.get_or_insert_with(|| data.input.clone());
        self.classes.get_or_insert(data.classes);
        if self.input.as_ref() == Some(&data.input)
            && let Some(v) = data.vocab
        {
            self.vocab.get_or_insert(v);
        }
    }

    fn needs_data(&self) -> bool {
        let ids = self.input.as_ref().is_none_or(|i| i.len() == 1);
        self.input.is_none() || self.classes.is_none() || (ids && self.vocab.is_none())
    }
}

/// One block option of a position, as decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Conv {
        kernel: usize,
        dilation: usize,
        causal: bool,
    },
    Gru,
    Lstm,
    Attention {
        heads: usize,
    },
    Ffn,
    Identity,
}

impl Block {
    /// The option string (`conv_k5_d2_causal`, `attention_h4`, `gru`, ...).
    fn name(self) -> String {
        match self {
            Block::Conv {
                kernel,
                dilation,
                causal,
            } => {
                let tail = if causal { "_causal" } else { "" };
                format!("conv_k{kernel}_d{dilation}{tail}")
            }
            Block::Gru => "gru".into(),
            Block::Lstm => "lstm".into(),
            Block::Attention { heads } => format!("attention_h{heads}"),
            Block::Ffn => "ffn".into(),
            Block::Identity => "identity".into(),
        }
    }
}

impl SequenceNorm {
    fn name(self) -> &'static str {
        match self {
            SequenceNorm::None => "none",
            SequenceNorm::Layer => "layer",
        }
    }
}

impl Pooling {
    fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Max => "max",
            Pooling::Last => "last",
            Pooling::Attention => "attention",
        }
    }
}

impl Classifier {
    fn name(self) -> &'static str {
        match self {
            Classifier::Linear => "linear",
            Classifier::Mlp => "mlp",
        }
    }
}

/// The chosen network, decoded from a choice vector.
#[derive(Clone, Debug, PartialEq)]
struct Chosen {
    width: usize,
    depth: usize,
    /// One per position (those past `depth` unused).
    blocks: Vec<Block>,
    residual: bool,
    norm: SequenceNorm,
    pooling: Pooling,
    classifier: Classifier,
}

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
        }
    }

    fn example(&self) -> String {
        let c = &self.config;
        let blocks = vec![self.options[0].name(); self.positions].join(",");
        format!(
            "width={} depth={} blocks={blocks} residual={} norm={} pooling={} classifier={}",
            c.widths[0],
            c.depths[0],
            c.residuals[0],
            c.norms[0].name(),
            c.poolings[0].name(),
            c.classifiers[0].name()
        )
    }

    /// The stem: `[T, width]` features, and the padding mask of token ids.
    fn stem(&self, b: &mut GraphBuilder, width: usize) -> (NodeId, Option<NodeId>) {
        let (x, mask) = match self.vocab {
            Some(vocab) => {
                let e = b.add(Op::Embedding { vocab, dim: width }, &[0]);
                (e, Some(b.add(Op::PaddingMask, &[0])))
            }
            None => {
                let d = b.add(
                    Op::Dense {
                        out_features: width,
                        bias: true,
                    },
                    &[0],
                );
                (d, None)
            }
        };
        let x = match self.config.positional {
            Positional::None => x,
            Positional::Sinusoidal => b.add(Op::PositionalEncoding { learned: false }, &[x]),
            Positional::Learned => b.add(Op::PositionalEncoding { learned: true }, &[x]),
        };
        (x, mask)
    }

    /// Block `block` over `x` `[T, width]`, giving `[T, width]`.
    fn block(
        &self,
        b: &mut GraphBuilder,
        block: Block,
        x: NodeId,
        width: usize,
        mask: Option<NodeId>,
    ) -> Result<NodeId, GraphError> {
        Ok(match block {
            Block::Conv {
                kernel,
                dilation,
                causal,
            } => {
                // Conv1d reads channels first: [T, D] -> [D, T] -> conv -> [T, D].
                let t = b.add(Op::Transpose { perm: vec![1, 0] }, &[x]);
                let c = b.add(
                    Op::Conv1d {
                        out_channels: width,
                        kernel,
                        dilation,
                        causal,
                        bias: true,
                    },
                    &[t],
                );
                let back = b.add(Op::Transpose { perm: vec![1, 0] }, &[c]);
                b.add(Op::Relu, &[back])
            }
            Block::Gru => gru(b, x, width)?.sequence,
            Block::Lstm => lstm(b, x, width)?.sequence,
            Block::Attention { heads } => self_attention(b, x, heads, width, mask)?.output,
            Block::Ffn => feed_forward(b, x, self.config.ffn_ratio * width)?.output,
            Block::Identity => x,
        })
    }

    /// `[T, D]` -> `[D]`.
    fn pool(
        &self,
        b: &mut GraphBuilder,
        pooling: Pooling,
        x: NodeId,
        mask: Option<NodeId>,
    ) -> NodeId {
        let masked = |b: &mut GraphBuilder, op: Op, x: NodeId| {
            let mut ins = vec![x];
            ins.extend(mask);
            b.add(op, &ins)
        };
        let kind = match pooling {
            Pooling::Mean => TimePoolKind::Mean,
            Pooling::Max => TimePoolKind::Max,
            Pooling::Last => TimePoolKind::Last,
            Pooling::Attention => {
                let steps = self.input[0];
                // score_t = x_t . w (a bias would shift every score alike), softmax over
                // the (unpadded) steps, then the weighted sum of the steps.
                let score = b.add(
                    Op::Dense {
                        out_features: 1,
                        bias: false,
                    },
                    &[x],
                );
                let flat = b.add(Op::Reshape { shape: vec![steps] }, &[score]);
                let weights = masked(b, Op::Softmax, flat);
                let row = b.add(
                    Op::Reshape {
                        shape: vec![1, steps],
                    },
                    &[weights],
                );
                let sum = b.add(Op::MatMul, &[row, x]);
                return b.add(Op::Flatten, &[sum]);
            }
        };
        masked(b, Op::TimePool { kind }, x)
    }

    fn build_graph(&self, chosen: &Chosen) -> Result<Graph, GraphError> {
        let width = chosen.width;
        let mut b = GraphBuilder::new(&self.input);
        let (mut x, mask) = self.stem(&mut b, width);
        let layer_norm = chosen.norm == SequenceNorm::Layer;
        for &block in &chosen.blocks[..chosen.depth] {
            if block == Block::Identity {
                continue;
            }
            let h = if layer_norm {
                b.add(Op::LayerNorm { eps: 1e-5 }, &[x])
            } else {
                x
            };
            let y = self.block(&mut b, block, h, width, mask)?;
            x = if chosen.residual {
                b.add(Op::Add, &[x, y])
            } else {
                y
            };
        }
        if layer_norm {
            x = b.add(Op::LayerNorm { eps: 1e-5 }, &[x]);
        }
        let pooled = self.pool(&mut b, chosen.pooling, x, mask);
        let linear = |out_features| Op::Linear {
            out_features,
            bias: true,
        };
        let logits = match chosen.classifier {
            Classifier::Linear => b.add(linear(self.classes), &[pooled]),
            Classifier::Mlp => {
                let h = b.add(linear(width), &[pooled]);
                let r = b.add(Op::Relu, &[h]);
                b.add(linear(self.classes), &[r])
            }
        };
        Ok(b.finish(logits))
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
            .map_err(|source| SpaceError::Graph { kind: KIND, source })?;
        checked(KIND, graph)
    }

    fn arch_string(&self, values: &[f64]) -> String {
        if check_values(KIND, &self.descriptor, values).is_err() {
            return format!("invalid sequence choices {values:?}");
        }
        let c = self.chosen(values);
        let blocks: Vec<String> = c.blocks.iter().map(|b| b.name()).collect();
        format!(
            "width={} depth={} blocks={} residual={} norm={} pooling={} classifier={}",
            c.width,
            c.depth,
            blocks.join(","),
            c.residual,
            c.norm.name(),
            c.pooling.name(),
            c.classifier.name()
        )
    }

    fn parse_arch(&self, arch: &str) -> Result<Vec<f64>, SpaceError> {
        const KEYS: [&str; 7] = [
            "width",
            "depth",
            "blocks",
            "residual",
            "norm",
            "pooling",
            "classifier",
        ];
        let err = |reason: String| SpaceError::Arch {
            kind: KIND,
            arch: arch.to_string(),
            reason,
            example: self.example(),
        };
        let mut fields = std::collections::BTreeMap::new();
        for token in arch.split_whitespace() {
            let (key, value) = token
                .split_once('=')
                .ok_or_else(|| err(format!("`{token}` is not `key=value`")))?;
            if !KEYS.contains(&key) {
                return Err(err(format!("unknown field `{key}`")));
            }
            if fields.insert(key, value).is_some() {
                return Err(err(format!("`{key}` is given twice")));
            }
        }
        let field = |key: &str| {
            fields
                .get(key)
                .copied()
                .ok_or_else(|| err(format!("`{key}=` is missing")))
        };
        let position = |key: &str, value: &str, choice: usize| -> Result<f64, SpaceError> {
            let ChoiceKind::Categorical { options } = &self.descriptor.choices[choice].kind else {
                unreachable!("every sequence choice is categorical")
            };
            options
                .iter()
                .position(|o| o == value)
                .map(|i| i as f64)
                .ok_or_else(|| {
                    err(format!(
                        "{key} `{value}` is not an option; allowed: {options:?}"
                    ))
                })
        };
        let mut values = vec![
            position("width", field("width")?, 0)?,
            position("depth", field("depth")?, 1)?,
        ];
        let blocks: Vec<&str> = field("blocks")?.split(',').collect();
        if blocks.len() != self.positions {
            return Err(err(format!(
                "`blocks` lists {} blocks, the space has {} block positions",
                blocks.len(),
                self.positions
            )));
        }
        for (i, block) in blocks.iter().enumerate() {
            values.push(position("blocks", block, 2 + i)?);
        }
        let tail = 2 + self.positions;
        for (i, key) in KEYS[3..].iter().enumerate() {
            values.push(position(key, field(key)?, tail + i)?);
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::KindConfig;

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
        let arch = "width=8 depth=2 blocks=conv_k3_d2,gru residual=true norm=layer pooling=max classifier=mlp";
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
}
