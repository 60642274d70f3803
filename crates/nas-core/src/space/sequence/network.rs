//! The network a choice vector names: stem, blocks, pooling over time and head.

use nas_graph::sequence::{feed_forward, gru, lstm, self_attention};
use nas_graph::{Graph, GraphBuilder, GraphError, NodeId, Op, TimePoolKind};

use super::SequenceSpace;
use super::config::{Classifier, Pooling, Positional, SequenceNorm};

/// One block option of a position, as decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Block {
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
    pub(super) fn name(self) -> String {
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

/// The chosen network, decoded from a choice vector.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Chosen {
    pub(super) width: usize,
    pub(super) depth: usize,
    /// One per position (those past `depth` unused).
    pub(super) blocks: Vec<Block>,
    pub(super) residual: bool,
    pub(super) norm: SequenceNorm,
    pub(super) pooling: Pooling,
    pub(super) classifier: Classifier,
    /// After every block and before the head (0: none).
    pub(super) dropout: f64,
}

impl SequenceSpace {
    /// The stem: `[T, width]` features, and the padding mask of token ids (or of padded
    /// features).
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
                let mask = self.config.padding.then(|| b.add(Op::PaddingMask, &[0]));
                (d, mask)
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

    pub(super) fn build_graph(&self, chosen: &Chosen) -> Result<Graph, GraphError> {
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
            let y = dropout(&mut b, y, chosen.dropout);
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
        let pooled = dropout(&mut b, pooled, chosen.dropout);
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

/// `x` through dropout with probability `p` (unchanged when 0).
fn dropout(b: &mut GraphBuilder, x: NodeId, p: f64) -> NodeId {
    if p > 0.0 {
        b.add(Op::Dropout { p: p as f32 }, &[x])
    } else {
        x
    }
}
