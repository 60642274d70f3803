//! A MobileNetV2-like macro space: a stem, a chain of stages of inverted-residual blocks,
//! and a head. Each stage chooses its depth, kernel size, expansion ratio and width.
//!
//! All choices are categorical (option lists need not be contiguous ranges); the option
//! strings are the numbers themselves, e.g. `stage2.width` options `["20", "24", "32"]`.
//! A stage's width options are its `widths` if given, else its `channels` times each of
//! `width_multipliers`, rounded to a multiple of `channel_divisor` (MobileNet's rule),
//! deduplicated and sorted.
//!
//! ```toml
//! [space]
//! kind = "chain"
//! activation = "silu"
//! kernels = [3, 5]
//! stages = [
//!   { channels = 16, stride = 1, depths = [1] },
//!   { channels = 32, stride = 2 },
//!   { channels = 64, stride = 2, widths = [48, 64, 96] },
//! ]
//! ```

use nas_graph::{Graph, GraphBuilder, NodeId, Op, Supernet};
use nas_plugin::{Choice, ChoiceKind, SpaceDescriptor};
use serde::{Deserialize, Serialize};

mod supernet;

use super::{SearchSpace, SpaceError, check_kind, check_values, checked, config_error, image_io};

const KIND: &str = "chain";

/// Choice fields of one stage, in descriptor order.
const FIELDS: [(&str, char); 4] = [
    ("depth", 'd'),
    ("kernel", 'k'),
    ("expansion", 'e'),
    ("width", 'w'),
];

/// Largest number of blocks in one stage.
const MAX_DEPTH: usize = 100;

/// Largest channel count of any layer the config sets directly (stem, stage widths, head).
const MAX_CHANNELS: usize = 4096;

/// `[space] kind = "chain"`. Every knob is optional.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChainSpaceConfig {
    pub kind: String,
    /// Per-sample input shape `[C, H, W]`; from the dataset when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<usize>>,
    /// Number of classes; from the dataset when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Output channels of the 3x3 stem conv.
    #[serde(default = "default_stem_channels")]
    pub stem_channels: usize,
    /// Stride of the stem conv (1 suits 32x32 inputs; 2 for large images).
    #[serde(default = "default_one")]
    pub stem_stride: usize,
    /// The stages, in order; each gives its base channels and the stride of its first block.
    #[serde(default = "default_stages")]
    pub stages: Vec<ChainStage>,
    /// Blocks per stage to choose from (for stages that do not override it).
    #[serde(default = "default_depths")]
    pub depths: Vec<usize>,
    /// Depthwise kernel sizes to choose from (odd).
    #[serde(default = "default_kernels")]
    pub kernels: Vec<usize>,
    /// Expansion ratios to choose from (1 skips the 1x1 expansion conv).
    #[serde(default = "default_expansions")]
    pub expansions: Vec<usize>,
    /// Width options of a stage as multiples of its `channels`.
    #[serde(default = "default_width_multipliers")]
    pub width_multipliers: Vec<f64>,
    /// Scaled widths are rounded to a multiple of this.
    #[serde(default = "default_channel_divisor")]
    pub channel_divisor: usize,
    /// Channels of the 1x1 head conv before pooling; 0 leaves the head conv out.
    #[serde(default = "default_head_channels")]
    pub head_channels: usize,
    /// Activation after the stem, expansion, depthwise and head convs.
    #[serde(default)]
    pub activation: Activation,
}

/// One stage of the chain; the lists override the space-wide ones for this stage.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChainStage {
    /// Base output channels (scaled by `width_multipliers` unless `widths` is given).
    pub channels: usize,
    /// Stride of the stage's first block.
    #[serde(default = "default_one")]
    pub stride: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depths: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expansions: Option<Vec<usize>>,
    /// Explicit output channel options for this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widths: Option<Vec<usize>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Relu6,
    Relu,
    Silu,
}

impl Activation {
    fn op(self) -> Op {
        match self {
            Activation::Relu6 => Op::Relu6,
            Activation::Relu => Op::Relu,
            Activation::Silu => Op::Silu,
        }
    }
}

fn default_stem_channels() -> usize {
    16
}

fn default_one() -> usize {
    1
}

/// MobileNetV2's widths for 32x32 inputs: 32 -> 32 -> 16 -> 8 -> 4 -> 4.
fn default_stages() -> Vec<ChainStage> {
    [(16, 1), (24, 2), (32, 2), (64, 2), (96, 1)]
        .into_iter()
        .map(|(channels, stride)| ChainStage {
            channels,
            stride,
            depths: None,
            kernels: None,
            expansions: None,
            widths: None,
        })
        .collect()
}

fn default_depths() -> Vec<usize> {
    vec![1, 2, 3, 4]
}

fn default_kernels() -> Vec<usize> {
    vec![3, 5, 7]
}

fn default_expansions() -> Vec<usize> {
    vec![3, 4, 6]
}

fn default_width_multipliers() -> Vec<f64> {
    vec![0.75, 1.0, 1.25]
}

fn default_channel_divisor() -> usize {
    4
}

fn default_head_channels() -> usize {
    1280
}

impl Default for ChainSpaceConfig {
    fn default() -> Self {
        ChainSpaceConfig {
            kind: KIND.to_string(),
            input: None,
            classes: None,
            stem_channels: default_stem_channels(),
            stem_stride: default_one(),
            stages: default_stages(),
            depths: default_depths(),
            kernels: default_kernels(),
            expansions: default_expansions(),
            width_multipliers: default_width_multipliers(),
            channel_divisor: default_channel_divisor(),
            head_channels: default_head_channels(),
            activation: Activation::default(),
        }
    }
}

impl super::KindConfig for ChainSpaceConfig {
    const KIND: &'static str = KIND;

    fn io(&self) -> (&Option<Vec<usize>>, &Option<usize>) {
        (&self.input, &self.classes)
    }

    fn io_mut(&mut self) -> (&mut Option<Vec<usize>>, &mut Option<usize>) {
        (&mut self.input, &mut self.classes)
    }

    fn build(&self) -> Result<Box<dyn SearchSpace>, SpaceError> {
        Ok(Box::new(ChainSpace::new(self)?))
    }
}

/// Resolved options of one stage; `options[f]` follows [`FIELDS`].
#[derive(Clone, Debug)]
struct StageOptions {
    stride: usize,
    options: [Vec<usize>; 4],
}

/// The chain space for one config.
#[derive(Clone, Debug)]
pub struct ChainSpace {
    descriptor: SpaceDescriptor,
    input: Vec<usize>,
    classes: usize,
    stem_channels: usize,
    stem_stride: usize,
    head_channels: usize,
    activation: Activation,
    stages: Vec<StageOptions>,
}

/// MobileNet's `_make_divisible`: nearest multiple of `d`, never below 90 % of `v`.
fn make_divisible(v: f64, d: usize) -> usize {
    let d_f = d as f64;
    let mut r = (((v + d_f / 2.0) / d_f).floor() as usize * d).max(d);
    if (r as f64) < 0.9 * v {
        r += d;
    }
    r
}

/// Refuses a size above `max` (a network too large to build, train or hash).
fn check_max(field: &str, value: usize, max: usize) -> Result<(), SpaceError> {
    if value > max {
        return Err(config_error(
            KIND,
            field,
            format!("is {value}, above the limit of {max}; set at most {max}"),
        ));
    }
    Ok(())
}

/// Checks a list of options: non-empty, no duplicates, every entry allowed.
fn check_list(
    field: &str,
    list: &[usize],
    allowed: impl Fn(usize) -> bool,
    rule: &str,
) -> Result<(), SpaceError> {
    if list.is_empty() {
        return Err(config_error(KIND, field, "must list at least one option"));
    }
    if let Some(bad) = list.iter().find(|&&v| !allowed(v)) {
        return Err(config_error(
            KIND,
            field,
            format!("contains {bad}; every entry must be {rule}"),
        ));
    }
    if let Some(v) = list
        .iter()
        .enumerate()
        .find_map(|(i, v)| list[..i].contains(v).then_some(v))
    {
        return Err(config_error(
            KIND,
            field,
            format!("lists {v} twice; remove the duplicate"),
        ));
    }
    Ok(())
}

impl ChainSpace {
    pub fn new(config: &ChainSpaceConfig) -> Result<ChainSpace, SpaceError> {
        check_kind(KIND, &config.kind)?;
        let (input, classes) = image_io(KIND, &config.input, config.classes)?;
        let positive = |v: usize| v >= 1;
        let odd = |v: usize| !v.is_multiple_of(2);
        let depth = |v: usize| (1..=MAX_DEPTH).contains(&v);
        let depth_rule = format!("between 1 and {MAX_DEPTH} (MobileNetV2 uses at most 4)");
        let width = |v: usize| (1..=MAX_CHANNELS).contains(&v);
        let width_rule = format!("between 1 and {MAX_CHANNELS}");
        if config.stem_channels == 0 {
            return Err(config_error(KIND, "stem_channels", "must be at least 1"));
        }
        check_max("stem_channels", config.stem_channels, MAX_CHANNELS)?;
        check_max("head_channels", config.head_channels, MAX_CHANNELS)?;
        if config.stem_stride == 0 {
            return Err(config_error(KIND, "stem_stride", "must be at least 1"));
        }
        if config.channel_divisor == 0 {
            return Err(config_error(KIND, "channel_divisor", "must be at least 1"));
        }
        if config.stages.is_empty() {
            return Err(config_error(
                KIND,
                "stages",
                "must list at least one stage, e.g. [{ channels = 24, stride = 2 }]",
            ));
        }
        check_list("depths", &config.depths, depth, &depth_rule)?;
        check_list("kernels", &config.kernels, odd, "an odd kernel size")?;
        check_list("expansions", &config.expansions, positive, "at least 1")?;
        if config.width_multipliers.is_empty() {
            return Err(config_error(
                KIND,
                "width_multipliers",
                "must list at least one multiplier, e.g. [1.0]",
            ));
        }
        if let Some(bad) = config
            .width_multipliers
            .iter()
            .find(|m| !(m.is_finite() && **m > 0.0))
        {
            return Err(config_error(
                KIND,
                "width_multipliers",
                format!("contains {bad}; every multiplier must be a positive number"),
            ));
        }

        let mut stages = Vec::with_capacity(config.stages.len());
        for (i, stage) in config.stages.iter().enumerate() {
            let at = |field: &str| format!("stages[{i}].{field}");
            if stage.channels == 0 {
                return Err(config_error(KIND, &at("channels"), "must be at least 1"));
            }
            check_max(&at("channels"), stage.channels, MAX_CHANNELS)?;
            if stage.stride == 0 {
                return Err(config_error(KIND, &at("stride"), "must be at least 1"));
            }
            let depths = stage.depths.clone().unwrap_or(config.depths.clone());
            let kernels = stage.kernels.clone().unwrap_or(config.kernels.clone());
            let expansions = stage
                .expansions
                .clone()
                .unwrap_or(config.expansions.clone());
            check_list(&at("depths"), &depths, depth, &depth_rule)?;
            check_list(&at("kernels"), &kernels, odd, "an odd kernel size")?;
            check_list(&at("expansions"), &expansions, positive, "at least 1")?;
            let widths = match &stage.widths {
                Some(w) => {
                    check_list(&at("widths"), w, width, &width_rule)?;
                    w.clone()
                }
                None => {
                    let mut w: Vec<usize> = config
                        .width_multipliers
                        .iter()
                        .map(|m| make_divisible(stage.channels as f64 * m, config.channel_divisor))
                        .collect();
                    w.sort_unstable();
                    w.dedup();
                    if let Some(&widest) = w.last().filter(|&&v| v > MAX_CHANNELS) {
                        return Err(config_error(
                            KIND,
                            "width_multipliers",
                            format!(
                                "make `stages[{i}]` {widest} channels wide, above the limit of {MAX_CHANNELS}; use smaller multipliers or a smaller `stages[{i}].channels`"
                            ),
                        ));
                    }
                    w
                }
            };
            stages.push(StageOptions {
                stride: stage.stride,
                options: [depths, kernels, expansions, widths],
            });
        }

        let mut choices = Vec::with_capacity(4 * stages.len());
        for (i, stage) in stages.iter().enumerate() {
            for ((field, _), options) in FIELDS.iter().zip(&stage.options) {
                choices.push(Choice {
                    name: format!("stage{}.{field}", i + 1),
                    kind: ChoiceKind::Categorical {
                        options: options.iter().map(|v| v.to_string()).collect(),
                    },
                });
            }
        }
        Ok(ChainSpace {
            descriptor: SpaceDescriptor {
                kind: KIND.to_string(),
                choices,
            },
            input,
            classes,
            stem_channels: config.stem_channels,
            stem_stride: config.stem_stride,
            head_channels: config.head_channels,
            activation: config.activation,
            stages,
        })
    }

    /// The chosen `[depth, kernel, expansion, width]` of every stage (values already checked).
    fn chosen(&self, values: &[f64]) -> Vec<[usize; 4]> {
        self.stages
            .iter()
            .zip(values.chunks(4))
            .map(|(stage, v)| std::array::from_fn(|f| stage.options[f][super::index(v[f])]))
            .collect()
    }

    /// The 3x3 stem conv, BN and activation.
    fn stem(&self, b: &mut GraphBuilder) -> NodeId {
        let stem = b.conv(b.input(), self.stem_channels, 3, self.stem_stride, 1);
        let bn = b.batch_norm(stem);
        b.add(self.activation.op(), &[bn])
    }

    /// The 1x1 head conv (unless `head_channels` is 0), pooling and the classifier.
    fn head(&self, b: &mut GraphBuilder, mut x: NodeId) -> NodeId {
        if self.head_channels > 0 {
            let head = b.conv(x, self.head_channels, 1, 1, 1);
            let bn = b.batch_norm(head);
            x = b.add(self.activation.op(), &[bn]);
        }
        let pool = b.add(Op::GlobalAvgPool, &[x]);
        b.add(
            Op::Linear {
                out_features: self.classes,
                bias: true,
            },
            &[pool],
        )
    }

    fn example(&self) -> String {
        self.stages
            .iter()
            .map(|s| {
                FIELDS
                    .iter()
                    .zip(&s.options)
                    .map(|((_, p), o)| format!("{p}{}", o[0]))
                    .collect::<Vec<_>>()
                    .join("-")
            })
            .collect::<Vec<_>>()
            .join("|")
    }
}

impl SearchSpace for ChainSpace {
    fn descriptor(&self) -> &SpaceDescriptor {
        &self.descriptor
    }

    fn decode(&self, values: &[f64]) -> Result<Graph, SpaceError> {
        check_values(KIND, &self.descriptor, values)?;
        let act = self.activation.op();
        let mut b = GraphBuilder::new(&self.input);
        let mut x = self.stem(&mut b);
        let mut c_in = self.stem_channels;
        for (stage, [depth, kernel, expansion, width]) in
            self.stages.iter().zip(self.chosen(values))
        {
            for block in 0..depth {
                let stride = if block == 0 { stage.stride } else { 1 };
                x = inverted_residual(&mut b, x, c_in, width, kernel, stride, expansion, &act);
                c_in = width;
            }
        }
        let logits = self.head(&mut b, x);
        checked(KIND, b.finish(logits))
    }

    fn supernet(&self, aux_skip: bool) -> Result<Supernet, SpaceError> {
        supernet::build(self, aux_skip)
    }

    fn arch_string(&self, values: &[f64]) -> String {
        self.stages
            .iter()
            .enumerate()
            .map(|(s, stage)| {
                FIELDS
                    .iter()
                    .enumerate()
                    .map(|(f, (_, prefix))| {
                        let value = values
                            .get(4 * s + f)
                            .filter(|v| v.fract() == 0.0 && **v >= 0.0)
                            .and_then(|&v| stage.options[f].get(v as usize));
                        match value {
                            Some(v) => format!("{prefix}{v}"),
                            None => format!("{prefix}?"),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("-")
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    fn parse_arch(&self, arch: &str) -> Result<Vec<f64>, SpaceError> {
        let err = |reason: String| SpaceError::Arch {
            kind: KIND,
            arch: arch.to_string(),
            reason,
            example: self.example(),
        };
        let parts: Vec<&str> = arch.trim().split('|').collect();
        if parts.len() != self.stages.len() {
            return Err(err(format!(
                "found {} `|`-separated stages, the space has {}",
                parts.len(),
                self.stages.len()
            )));
        }
        let mut values = Vec::with_capacity(4 * parts.len());
        for (s, (part, stage)) in parts.iter().zip(&self.stages).enumerate() {
            let tokens: Vec<&str> = part.split('-').collect();
            if tokens.len() != FIELDS.len() {
                return Err(err(format!(
                    "stage {} `{part}` has {} `-`-separated fields, expected 4 (d, k, e, w)",
                    s + 1,
                    tokens.len()
                )));
            }
            for ((token, (field, prefix)), options) in tokens.iter().zip(FIELDS).zip(&stage.options)
            {
                let number = token
                    .strip_prefix(prefix)
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        err(format!(
                            "stage {} {field} `{token}` is not `{prefix}` followed by a number",
                            s + 1
                        ))
                    })?;
                let i = options.iter().position(|&o| o == number).ok_or_else(|| {
                    err(format!(
                        "stage {} {field} {number} is not an option; allowed: {options:?}",
                        s + 1
                    ))
                })?;
                values.push(i as f64);
            }
        }
        Ok(values)
    }
}

/// MobileNetV2 block: 1x1 expand (unless expansion is 1) -> depthwise kxk -> 1x1 project
/// (linear bottleneck, no activation), plus the input when shapes allow.
#[allow(clippy::too_many_arguments)]
fn inverted_residual(
    b: &mut GraphBuilder,
    x: NodeId,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    expansion: usize,
    act: &Op,
) -> NodeId {
    let hidden = c_in * expansion;
    let mut h = x;
    if expansion != 1 {
        let c = b.conv(h, hidden, 1, 1, 1);
        let bn = b.batch_norm(c);
        h = b.add(act.clone(), &[bn]);
    }
    let dw = b.conv(h, hidden, kernel, stride, hidden);
    let bn = b.batch_norm(dw);
    h = b.add(act.clone(), &[bn]);
    let project = b.conv(h, c_out, 1, 1, 1);
    let out = b.batch_norm(project);
    if stride == 1 && c_in == c_out {
        b.add(Op::Add, &[x, out])
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_follows_mobilenet() {
        assert_eq!(make_divisible(12.0, 4), 12);
        assert_eq!(make_divisible(18.0, 4), 20);
        assert_eq!(make_divisible(30.0, 4), 32);
        assert_eq!(make_divisible(18.0, 8), 24); // 16 < 0.9 * 18
        assert_eq!(make_divisible(2.0, 8), 8);
    }

    #[test]
    fn default_width_options() {
        let space = ChainSpace::new(&ChainSpaceConfig::default()).unwrap();
        let widths: Vec<&Vec<usize>> = space.stages.iter().map(|s| &s.options[3]).collect();
        assert_eq!(
            widths,
            [
                &vec![12, 16, 20],
                &vec![20, 24, 32],
                &vec![24, 32, 40],
                &vec![48, 64, 80],
                &vec![72, 96, 120]
            ]
        );
    }
}
