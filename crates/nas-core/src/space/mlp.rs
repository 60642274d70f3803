//! Multi-layer perceptrons for tabular data (or any input, flattened): the depth, the width of
//! each hidden layer, and one activation, dropout rate, normalization and residual setting
//! for the whole network.
//!
//! A hidden layer is `Linear -> norm -> activation -> dropout`, plus its input when `skip` is
//! on and the widths match (a residual MLP). Choices of layers deeper than the chosen depth do
//! not change the network (the canonical hash sees the same graph).
//!
//! Tables whose categorical columns are codes (`[data] categorical_encoding = "embed"`) name
//! those features in `categorical` (filled in from the data): the network slices each code out
//! of the input, embeds it (`Embedding` of its `categories` rows) and concatenates the
//! embeddings with the numeric features before the first layer. One more choice,
//! `embed_dim` from `embed_dims`, sets the embedding width of every such feature, capped at
//! the feature's number of categories (a wider table would hold nothing more).
//!
//! ```toml
//! [space]
//! kind = "mlp"
//! depths = [1, 2, 3]
//! widths = [64, 128, 256]
//! activations = ["relu", "gelu", "silu"]
//! dropouts = [0.0, 0.1, 0.3]
//! norms = ["none", "batch"]
//! skips = [false, true]
//! embed_dims = [2, 4, 8]     # used only when the input has categorical (code) features
//! ```

use nas_data::CategoricalFeature;
use nas_graph::{Graph, GraphBuilder, NodeId, Op};
use nas_plugin::{Choice, ChoiceKind, SpaceDescriptor};
use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_CLASSES, DEFAULT_INPUT, SearchSpace, SpaceError, arch_fields, arch_values, check_kind,
    check_values, checked, config_error,
};

const KIND: &str = "mlp";

/// Most hidden layers one network may have.
const MAX_DEPTH: usize = 64;
/// Widest hidden layer.
const MAX_WIDTH: usize = 65_536;

/// `[space] kind = "mlp"`. Every knob is optional.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MlpSpaceConfig {
    pub kind: String,
    /// Per-sample input shape (flattened to its product when it is not `[F]`); from the
    /// dataset when omitted (tabular data is `[F, 1, 1]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<usize>>,
    /// Number of classes; from the dataset when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Numbers of hidden layers to choose from.
    #[serde(default = "default_depths")]
    pub depths: Vec<usize>,
    /// Widths each hidden layer chooses from.
    #[serde(default = "default_widths")]
    pub widths: Vec<usize>,
    #[serde(default = "default_activations")]
    pub activations: Vec<MlpActivation>,
    /// Dropout probabilities after each hidden layer (0 leaves dropout out).
    #[serde(default = "default_dropouts")]
    pub dropouts: Vec<f64>,
    #[serde(default = "default_norms")]
    pub norms: Vec<MlpNorm>,
    /// Whether hidden layers of equal width add their input (residual connections).
    #[serde(default = "default_skips")]
    pub skips: Vec<bool>,
    /// Features of the (flattened) input that hold category codes `0..categories`, each
    /// embedded; from the dataset when omitted (none unless `categorical_encoding = "embed"`).
    #[serde(default, skip_serializing_if = "no_categorical")]
    pub categorical: Option<Vec<CategoricalFeature>>,
    /// Embedding widths to choose from for the categorical features (one choice for all).
    #[serde(
        default = "default_embed_dims",
        skip_serializing_if = "is_default_embed_dims"
    )]
    pub embed_dims: Vec<usize>,
}

fn no_categorical(c: &Option<Vec<CategoricalFeature>>) -> bool {
    c.as_ref().is_none_or(Vec::is_empty)
}

fn default_embed_dims() -> Vec<usize> {
    vec![2, 4, 8]
}

fn is_default_embed_dims(dims: &Vec<usize>) -> bool {
    *dims == default_embed_dims()
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MlpActivation {
    Relu,
    Gelu,
    Silu,
    Sigmoid,
}

impl MlpActivation {
    fn op(self) -> Op {
        match self {
            MlpActivation::Relu => Op::Relu,
            MlpActivation::Gelu => Op::Gelu,
            MlpActivation::Silu => Op::Silu,
            MlpActivation::Sigmoid => Op::Sigmoid,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MlpActivation::Relu => "relu",
            MlpActivation::Gelu => "gelu",
            MlpActivation::Silu => "silu",
            MlpActivation::Sigmoid => "sigmoid",
        }
    }
}

/// Normalization after each hidden layer's `Linear`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MlpNorm {
    None,
    /// BatchNorm over the features.
    Batch,
}

impl MlpNorm {
    fn name(self) -> &'static str {
        match self {
            MlpNorm::None => "none",
            MlpNorm::Batch => "batch",
        }
    }
}

fn default_depths() -> Vec<usize> {
    vec![1, 2, 3]
}

fn default_widths() -> Vec<usize> {
    vec![64, 128, 256]
}

fn default_activations() -> Vec<MlpActivation> {
    vec![
        MlpActivation::Relu,
        MlpActivation::Gelu,
        MlpActivation::Silu,
    ]
}

fn default_dropouts() -> Vec<f64> {
    vec![0.0, 0.1, 0.3]
}

fn default_norms() -> Vec<MlpNorm> {
    vec![MlpNorm::None, MlpNorm::Batch]
}

fn default_skips() -> Vec<bool> {
    vec![false, true]
}

impl Default for MlpSpaceConfig {
    fn default() -> Self {
        MlpSpaceConfig {
            kind: KIND.to_string(),
            input: None,
            classes: None,
            depths: default_depths(),
            widths: default_widths(),
            activations: default_activations(),
            dropouts: default_dropouts(),
            norms: default_norms(),
            skips: default_skips(),
            categorical: None,
            embed_dims: default_embed_dims(),
        }
    }
}

impl super::KindConfig for MlpSpaceConfig {
    const KIND: &'static str = KIND;

    fn io(&self) -> (&Option<Vec<usize>>, &Option<usize>) {
        (&self.input, &self.classes)
    }

    fn io_mut(&mut self) -> (&mut Option<Vec<usize>>, &mut Option<usize>) {
        (&mut self.input, &mut self.classes)
    }

    fn build(&self) -> Result<Box<dyn SearchSpace>, SpaceError> {
        Ok(Box::new(MlpSpace::new(self)?))
    }

    /// Also the categorical features, when the input (given or filled in) is the data set's.
    fn fill_from_data(&mut self, data: &super::DataDefaults) {
        self.input.get_or_insert_with(|| data.input.clone());
        self.classes.get_or_insert(data.classes);
        if self.input.as_ref() == Some(&data.input) {
            self.categorical
                .get_or_insert_with(|| data.categorical.clone());
        }
    }

    fn needs_data(&self) -> bool {
        self.input.is_none() || self.classes.is_none() || self.categorical.is_none()
    }
}

/// The chosen network, decoded from a choice vector.
#[derive(Clone, Debug, PartialEq)]
struct Chosen {
    depth: usize,
    /// One per possible layer (those past `depth` unused).
    widths: Vec<usize>,
    activation: MlpActivation,
    dropout: f64,
    norm: MlpNorm,
    skip: bool,
    /// The embedding width (before capping); `None` without categorical features.
    embed_dim: Option<usize>,
}

/// The mlp space for one config.
#[derive(Clone, Debug)]
pub struct MlpSpace {
    descriptor: SpaceDescriptor,
    input: Vec<usize>,
    classes: usize,
    config: MlpSpaceConfig,
    /// Hidden layers that have a width choice (the largest depth).
    layers: usize,
    /// The categorical features, sorted by position.
    categorical: Vec<CategoricalFeature>,
}

/// A list of layer widths (hidden layers, embeddings): options as [`check_options`], each
/// from 1 to [`MAX_WIDTH`].
fn check_widths(field: &str, widths: &[usize]) -> Result<(), SpaceError> {
    check_options(field, widths)?;
    match widths.iter().find(|&&w| !(1..=MAX_WIDTH).contains(&w)) {
        Some(w) => Err(config_error(
            KIND,
            field,
            format!("contains {w}; every width must be between 1 and {MAX_WIDTH}"),
        )),
        None => Ok(()),
    }
}

fn check_options<T: PartialEq + std::fmt::Debug>(
    field: &str,
    list: &[T],
) -> Result<(), SpaceError> {
    super::check_options(KIND, field, list)
}

impl MlpSpace {
    pub fn new(config: &MlpSpaceConfig) -> Result<MlpSpace, SpaceError> {
        check_kind(KIND, &config.kind)?;
        let input = config
            .input
            .clone()
            .unwrap_or_else(|| DEFAULT_INPUT.to_vec());
        if input.is_empty() || input.contains(&0) {
            return Err(config_error(
                KIND,
                "input",
                format!("is {input:?}; it must be a shape with no zero, e.g. [13] or [13, 1, 1]"),
            ));
        }
        let classes = config.classes.unwrap_or(DEFAULT_CLASSES);
        if classes == 0 {
            return Err(config_error(KIND, "classes", "must be at least 1"));
        }
        check_options("depths", &config.depths)?;
        if let Some(d) = config.depths.iter().find(|&&d| d > MAX_DEPTH) {
            return Err(config_error(
                KIND,
                "depths",
                format!("contains {d}; at most {MAX_DEPTH} hidden layers (0 is a linear model)"),
            ));
        }
        check_widths("widths", &config.widths)?;
        check_options("activations", &config.activations)?;
        super::check_dropouts(KIND, &config.dropouts)?;
        check_options("norms", &config.norms)?;
        check_options("skips", &config.skips)?;
        let categorical = check_categorical(config, input.iter().product())?;

        let layers = config.depths.iter().copied().max().unwrap_or(0);
        let categorical_choice = |name: String, options: Vec<String>| Choice {
            name,
            kind: ChoiceKind::Categorical { options },
        };
        let mut choices = vec![categorical_choice(
            "depth".into(),
            config.depths.iter().map(|d| d.to_string()).collect(),
        )];
        for layer in 1..=layers {
            choices.push(categorical_choice(
                format!("layer{layer}.width"),
                config.widths.iter().map(|w| w.to_string()).collect(),
            ));
        }
        choices.push(categorical_choice(
            "activation".into(),
            config.activations.iter().map(|a| a.name().into()).collect(),
        ));
        choices.push(categorical_choice(
            "dropout".into(),
            config.dropouts.iter().map(|p| p.to_string()).collect(),
        ));
        choices.push(categorical_choice(
            "norm".into(),
            config.norms.iter().map(|n| n.name().into()).collect(),
        ));
        choices.push(categorical_choice(
            "skip".into(),
            config.skips.iter().map(|s| s.to_string()).collect(),
        ));
        if !categorical.is_empty() {
            choices.push(categorical_choice(
                "embed_dim".into(),
                config.embed_dims.iter().map(|d| d.to_string()).collect(),
            ));
        }
        Ok(MlpSpace {
            descriptor: SpaceDescriptor {
                kind: KIND.to_string(),
                choices,
            },
            input,
            classes,
            config: config.clone(),
            layers,
            categorical,
        })
    }

    /// The network a checked choice vector names.
    fn chosen(&self, values: &[f64]) -> Chosen {
        let at = |i: usize| super::index(values[i]);
        let c = &self.config;
        let tail = 1 + self.layers;
        Chosen {
            depth: c.depths[at(0)],
            widths: (1..=self.layers).map(|i| c.widths[at(i)]).collect(),
            activation: c.activations[at(tail)],
            dropout: c.dropouts[at(tail + 1)],
            norm: c.norms[at(tail + 2)],
            skip: c.skips[at(tail + 3)],
            embed_dim: (!self.categorical.is_empty()).then(|| c.embed_dims[at(tail + 4)]),
        }
    }

    /// The input as one vector: the numeric features as they are and each categorical one
    /// embedded, in feature order. Returns the node and its width.
    fn features(
        &self,
        b: &mut GraphBuilder,
        x: NodeId,
        embed_dim: Option<usize>,
    ) -> (NodeId, usize) {
        let total = self.input.iter().product::<usize>();
        let Some(embed_dim) = embed_dim else {
            return (x, total);
        };
        let slice = |b: &mut GraphBuilder, start: usize, end: usize| {
            b.add(
                Op::Slice {
                    axis: 0,
                    start,
                    end,
                },
                &[x],
            )
        };
        let mut parts = Vec::new();
        let mut width = 0;
        let mut at = 0;
        for c in &self.categorical {
            if c.feature > at {
                parts.push(slice(b, at, c.feature));
                width += c.feature - at;
            }
            let code = slice(b, c.feature, c.feature + 1);
            let dim = embed_dim.min(c.categories);
            let e = b.add(
                Op::Embedding {
                    vocab: c.categories,
                    dim,
                },
                &[code],
            );
            parts.push(b.add(Op::Flatten, &[e]));
            width += dim;
            at = c.feature + 1;
        }
        if at < total {
            parts.push(slice(b, at, total));
            width += total - at;
        }
        let x = if parts.len() == 1 {
            parts[0]
        } else {
            b.add(Op::Concat, &parts)
        };
        (x, width)
    }

    fn example(&self) -> String {
        let c = &self.config;
        let widths = vec![c.widths[0].to_string(); self.layers].join(",");
        let embed = if self.categorical.is_empty() {
            String::new()
        } else {
            format!(" embed={}", c.embed_dims[0])
        };
        format!(
            "depth={} widths={widths} activation={} dropout={} norm={} skip={}{embed}",
            c.depths[0],
            c.activations[0].name(),
            c.dropouts[0],
            c.norms[0].name(),
            c.skips[0]
        )
    }
}

impl SearchSpace for MlpSpace {
    fn descriptor(&self) -> &SpaceDescriptor {
        &self.descriptor
    }

    fn decode(&self, values: &[f64]) -> Result<Graph, SpaceError> {
        check_values(KIND, &self.descriptor, values)?;
        let chosen = self.chosen(values);
        let mut b = GraphBuilder::new(&self.input);
        let mut x: NodeId = b.input();
        if self.input.len() != 1 {
            x = b.add(Op::Flatten, &[x]);
        }
        let (mut x, mut width) = self.features(&mut b, x, chosen.embed_dim);
        for &out in &chosen.widths[..chosen.depth] {
            let mut h = b.add(
                Op::Linear {
                    out_features: out,
                    // A bias before BatchNorm is cancelled by its mean.
                    bias: chosen.norm == MlpNorm::None,
                },
                &[x],
            );
            if chosen.norm == MlpNorm::Batch {
                h = b.batch_norm(h);
            }
            h = b.add(chosen.activation.op(), &[h]);
            if chosen.dropout > 0.0 {
                h = b.add(
                    Op::Dropout {
                        p: chosen.dropout as f32,
                    },
                    &[h],
                );
            }
            if chosen.skip && out == width {
                h = b.add(Op::Add, &[x, h]);
            }
            x = h;
            width = out;
        }
        let logits = b.add(
            Op::Linear {
                out_features: self.classes,
                bias: true,
            },
            &[x],
        );
        checked(KIND, b.finish(logits))
    }

    fn arch_string(&self, values: &[f64]) -> String {
        if check_values(KIND, &self.descriptor, values).is_err() {
            return format!("invalid mlp choices {values:?}");
        }
        let c = self.chosen(values);
        let widths: Vec<String> = c.widths.iter().map(|w| w.to_string()).collect();
        let embed = c
            .embed_dim
            .map(|d| format!(" embed={d}"))
            .unwrap_or_default();
        format!(
            "depth={} widths={} activation={} dropout={} norm={} skip={}{embed}",
            c.depth,
            widths.join(","),
            c.activation.name(),
            c.dropout,
            c.norm.name(),
            c.skip
        )
    }

    fn parse_arch(&self, arch: &str) -> Result<Vec<f64>, SpaceError> {
        const KEYS: [&str; 7] = [
            "depth",
            "widths",
            "activation",
            "dropout",
            "norm",
            "skip",
            "embed",
        ];
        // `embed` belongs to spaces with categorical features only.
        let keys = &KEYS[..if self.categorical.is_empty() { 6 } else { 7 }];
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
            (1, self.layers),
            ("layers", "width choices"),
            &err,
        )
    }
}

/// The categorical features sorted by position, after checking them against the flattened
/// input of `total` features and checking `embed_dims`.
fn check_categorical(
    config: &MlpSpaceConfig,
    total: usize,
) -> Result<Vec<CategoricalFeature>, SpaceError> {
    let mut features = config.categorical.clone().unwrap_or_default();
    features.sort_by_key(|c| c.feature);
    for (i, c) in features.iter().enumerate() {
        let why = if c.feature >= total {
            Some(format!("the input has {total} features (0..{total})"))
        } else if c.categories == 0 || c.categories > nas_data::MAX_VOCAB_SIZE {
            Some(format!(
                "its categories must be in 1..={}",
                nas_data::MAX_VOCAB_SIZE
            ))
        } else if i > 0 && features[i - 1].feature == c.feature {
            Some("it is listed twice".into())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(config_error(
                KIND,
                "categorical",
                format!(
                    "names feature {} ({} categories), but {why}",
                    c.feature, c.categories
                ),
            ));
        }
    }
    check_widths("embed_dims", &config.embed_dims)?;
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(config: MlpSpaceConfig) -> MlpSpace {
        MlpSpace::new(&MlpSpaceConfig {
            input: Some(vec![13, 1, 1]),
            classes: Some(3),
            ..config
        })
        .unwrap()
    }

    fn ops(g: &Graph) -> Vec<&'static str> {
        g.nodes.iter().map(|n| n.op.kind()).collect()
    }

    #[test]
    fn decodes_layers_norm_activation_dropout_and_skips() {
        let s = space(MlpSpaceConfig {
            depths: vec![0, 3],
            widths: vec![8, 16],
            ..MlpSpaceConfig::default()
        });
        let names: Vec<&str> = s
            .descriptor
            .choices
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "depth",
                "layer1.width",
                "layer2.width",
                "layer3.width",
                "activation",
                "dropout",
                "norm",
                "skip"
            ]
        );
        // depth 3, widths 8, 16, 16, gelu, dropout 0.1, batch norm, skips.
        let values = [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let g = s.decode(&values).unwrap();
        assert_eq!(
            ops(&g),
            [
                "Input",
                "Flatten",
                "Linear",
                "BatchNorm",
                "Gelu",
                "Dropout",
                "Linear",
                "BatchNorm",
                "Gelu",
                "Dropout",
                "Linear",
                "BatchNorm",
                "Gelu",
                "Dropout",
                "Add",
                "Linear"
            ]
        );
        // Params: 13*8 + 2*8, 8*16 + 2*16, 16*16 + 2*16, head 16*3 + 3.
        assert_eq!(
            g.param_count().unwrap(),
            (13 * 8 + 16 + 8 * 16 + 32 + 16 * 16 + 32 + 16 * 3 + 3) as u64
        );
        let arch = s.arch_string(&values);
        assert_eq!(
            arch,
            "depth=3 widths=8,16,16 activation=gelu dropout=0.1 norm=batch skip=true"
        );
        assert_eq!(s.parse_arch(&arch).unwrap(), values);
        let e = s
            .parse_arch("depth=3 widths=8,16 activation=gelu dropout=0.1 norm=batch skip=true")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`widths` lists 2 layers, the space has 3 width choices"),
            "{e}"
        );

        // Depth 0 is a linear model whatever the other choices.
        let linear = s.decode(&[0.0, 1.0, 0.0, 1.0, 2.0, 2.0, 0.0, 0.0]).unwrap();
        assert_eq!(ops(&linear), ["Input", "Flatten", "Linear"]);
        assert_eq!(
            linear.canonical_hash(),
            s.decode(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
                .unwrap()
                .canonical_hash()
        );
    }

    #[test]
    fn a_flat_input_is_not_flattened_and_every_default_choice_decodes() {
        let s = MlpSpace::new(&MlpSpaceConfig {
            input: Some(vec![5]),
            classes: Some(2),
            ..MlpSpaceConfig::default()
        })
        .unwrap();
        let g = s.decode(&vec![0.0; s.descriptor.choices.len()]).unwrap();
        assert_eq!(ops(&g), ["Input", "Linear", "Relu", "Linear"]);
        // Every option of every choice, one at a time.
        for (i, c) in s.descriptor.choices.iter().enumerate() {
            for v in 0..c.kind.cardinality().unwrap() {
                let mut values = vec![0.0; s.descriptor.choices.len()];
                values[i] = v as f64;
                let g = s.decode(&values).unwrap();
                assert_eq!(g.shapes().unwrap()[g.output], vec![2]);
                assert_eq!(s.parse_arch(&s.arch_string(&values)).unwrap(), values);
            }
        }
    }

    /// Penguins-like input: features 0 and 5 hold codes of 4 and 3 categories.
    fn embedded() -> super::super::DataDefaults {
        super::super::DataDefaults {
            input: vec![7, 1, 1],
            classes: 3,
            vocab: None,
            padded: false,
            categorical: vec![
                CategoricalFeature {
                    feature: 5,
                    categories: 3,
                },
                CategoricalFeature {
                    feature: 0,
                    categories: 4,
                },
            ],
        }
    }

    #[test]
    fn categorical_features_from_the_data_are_sliced_embedded_and_concatenated() {
        use super::super::KindConfig;
        let config = MlpSpaceConfig {
            depths: vec![1],
            widths: vec![8],
            embed_dims: vec![2, 8],
            ..MlpSpaceConfig::default()
        };
        assert!(config.needs_data());
        let filled = config.with_data_defaults(&embedded());
        assert!(!filled.needs_data());
        assert_eq!(filled.categorical.as_ref().unwrap().len(), 2);
        let s = MlpSpace::new(&filled).unwrap();
        let names: Vec<&str> = s
            .descriptor
            .choices
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names.last(), Some(&"embed_dim"));
        // embed_dim 8: capped at 4 and 3 categories.
        let values = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let g = s.decode(&values).unwrap();
        assert_eq!(
            ops(&g),
            [
                "Input",
                "Flatten",
                "Slice",
                "Embedding",
                "Flatten",
                "Slice",
                "Slice",
                "Embedding",
                "Flatten",
                "Slice",
                "Concat",
                "Linear",
                "Relu",
                "Linear"
            ]
        );
        let shapes = g.shapes().unwrap();
        let first = g
            .nodes
            .iter()
            .position(|n| matches!(n.op, Op::Linear { .. }))
            .unwrap();
        // 4 + 4 numeric + 3 + 1 numeric.
        assert_eq!(shapes[g.nodes[first].inputs[0]], vec![12]);
        assert_eq!(
            g.param_count().unwrap(),
            (4 * 4 + 3 * 3 + 12 * 8 + 8 + 8 * 3 + 3) as u64
        );
        let arch = s.arch_string(&values);
        assert!(arch.ends_with(" skip=false embed=8"), "{arch}");
        assert_eq!(s.parse_arch(&arch).unwrap(), values);
        let e = s
            .parse_arch("depth=1 widths=8 activation=relu dropout=0 norm=none skip=false")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`embed=` is missing"), "{e}");

        // An input of the config's own is not given the data's codes; a space without
        // codes has no embed choice and refuses `embed=`.
        let own = MlpSpaceConfig {
            input: Some(vec![9]),
            ..MlpSpaceConfig::default()
        }
        .with_data_defaults(&embedded());
        assert_eq!(own.categorical, None);
        let plain = space(MlpSpaceConfig::default());
        assert!(
            plain
                .descriptor
                .choices
                .iter()
                .all(|c| c.name != "embed_dim")
        );
        let e = plain
            .parse_arch(
                "depth=1 widths=64,64,64 activation=relu dropout=0 norm=none skip=false embed=2",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `embed`"), "{e}");
        let e = MlpSpace::new(&MlpSpaceConfig {
            input: Some(vec![4]),
            categorical: Some(vec![CategoricalFeature {
                feature: 4,
                categories: 2,
            }]),
            ..MlpSpaceConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`categorical` names feature 4") && e.contains("has 4 features"),
            "{e}"
        );
    }

    #[test]
    fn bad_configs_and_archs_are_named() {
        for (config, says) in [
            (
                MlpSpaceConfig {
                    depths: vec![],
                    ..MlpSpaceConfig::default()
                },
                "`depths` must list at least one option",
            ),
            (
                MlpSpaceConfig {
                    widths: vec![8, 0],
                    ..MlpSpaceConfig::default()
                },
                "`widths` contains 0",
            ),
            (
                MlpSpaceConfig {
                    dropouts: vec![1.0],
                    ..MlpSpaceConfig::default()
                },
                "in [0, 1)",
            ),
            (
                MlpSpaceConfig {
                    skips: vec![true, true],
                    ..MlpSpaceConfig::default()
                },
                "lists true twice",
            ),
            (
                MlpSpaceConfig {
                    input: Some(vec![4, 0]),
                    ..MlpSpaceConfig::default()
                },
                "`input` is [4, 0]",
            ),
        ] {
            let e = MlpSpace::new(&config).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        let s = space(MlpSpaceConfig::default());
        for (arch, says) in [
            ("depth=2", "`widths=` is missing"),
            (
                "depth=9 widths=64,64,64 activation=relu dropout=0 norm=none skip=false",
                "depth `9` is not an option",
            ),
            (
                "depth=1 widths=64 activation=relu dropout=0 norm=none skip=false",
                "lists 1 layers",
            ),
            ("depth=1 depth=2", "given twice"),
            ("depth", "not `key=value`"),
        ] {
            let e = s.parse_arch(arch).unwrap_err().to_string();
            assert!(e.contains(says), "{arch}: {e}");
        }
    }
}
