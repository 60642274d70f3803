//! The `[space] kind = "sequence"` table: its knobs, their defaults and what the data set
//! fills in.

use serde::{Deserialize, Serialize};

use super::{KIND, SequenceSpace};
use crate::space::{DataDefaults, KindConfig, SearchSpace, SpaceError};

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
    /// For `[T, F]` features: steps whose features are all 0 are padding, which attention and
    /// pooling leave out. Set from the data set when it was loaded with lengths and `input`
    /// comes from it; set it yourself when you give `input` for such data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub padding: bool,
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
    /// Dropout probabilities after every block and before the head; searched (a `dropout`
    /// choice, ` dropout=p` in the architecture string) unless the list is just `[0.0]`.
    #[serde(
        default = "default_dropouts",
        skip_serializing_if = "is_default_dropouts"
    )]
    pub dropouts: Vec<f64>,
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

fn default_dropouts() -> Vec<f64> {
    vec![0.0]
}

/// No dropout: the space (and its architecture strings) as before dropout was searchable.
pub(super) fn is_default_dropouts(dropouts: &Vec<f64>) -> bool {
    *dropouts == default_dropouts()
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
            padding: false,
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
            dropouts: default_dropouts(),
        }
    }
}

impl KindConfig for SequenceSpaceConfig {
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

    /// Also the vocabulary (token ids) or the padding (padded features), when the input
    /// (given or filled in) is the data set's.
    fn fill_from_data(&mut self, data: &DataDefaults) {
        self.input.get_or_insert_with(|| data.input.clone());
        self.classes.get_or_insert(data.classes);
        if self.input.as_ref() == Some(&data.input) {
            if let Some(v) = data.vocab {
                self.vocab.get_or_insert(v);
            }
            self.padding |= data.padded;
        }
    }

    fn needs_data(&self) -> bool {
        let ids = self.input.as_ref().is_none_or(|i| i.len() == 1);
        self.input.is_none() || self.classes.is_none() || (ids && self.vocab.is_none())
    }
}

impl SequenceNorm {
    pub(super) fn name(self) -> &'static str {
        match self {
            SequenceNorm::None => "none",
            SequenceNorm::Layer => "layer",
        }
    }
}

impl Pooling {
    pub(super) fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Max => "max",
            Pooling::Last => "last",
            Pooling::Attention => "attention",
        }
    }
}

impl Classifier {
    pub(super) fn name(self) -> &'static str {
        match self {
            Classifier::Linear => "linear",
            Classifier::Mlp => "mlp",
        }
    }
}
