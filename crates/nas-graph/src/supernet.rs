//! A one-shot supernet: one graph holding every candidate of a space, where each categorical
//! choice of the space is a set of mixed edges ([`Op::Mix`]) whose inputs are that choice's
//! options. A space builds it (it knows its structure); one-shot training
//! (`nas_train::oneshot`) only needs this description.

use serde::{Deserialize, Serialize};

use crate::error::GraphError;
use crate::ir::{Graph, NodeId, Op};

/// One mixed edge: a [`Op::Mix`] node deciding choice `choice`. Its first
/// `options[choice]` inputs are the choice's options, in option order; with
/// [`Supernet::aux_skip`] one more input follows, the edge's input itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixedEdge {
    pub node: NodeId,
    pub choice: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Supernet {
    pub graph: Graph,
    /// Every mixed edge; several edges share a choice where the space repeats a cell.
    pub edges: Vec<MixedEdge>,
    /// Options per choice of the space, in choice order.
    pub options: Vec<usize>,
    /// Each mixed edge ends with an auxiliary skip input (DARTS-).
    pub aux_skip: bool,
    /// A choice's options share their weights (a chain space's widths and expansion ratios
    /// are nested masks of one tensor, its depths prefixes of one stack), so every option
    /// trains whichever is sampled; a cell space's operations each have their own.
    /// GDAS's gradient follows it (`nas_train::oneshot::GdasGradient::Auto`).
    #[serde(default)]
    pub options_share_weights: bool,
    /// The smallest and the largest path, where the options are ordered by size (a chain's
    /// depths, kernels, expansion ratios and widths; a cell's largest operation and its
    /// cheapest one that passes its input on): the ends of the sandwich rule
    /// (`nas_train::oneshot::OneShotConfig::sandwich`). `None` where a space does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extreme_paths: Option<ExtremePaths>,
}

/// A supernet's smallest and largest path: an option index per choice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtremePaths {
    pub smallest: Vec<usize>,
    pub largest: Vec<usize>,
}

impl Supernet {
    /// Checks that every edge is a live Mix node with the inputs its choice calls for and
    /// that every choice has an edge.
    pub fn validate(&self) -> Result<(), GraphError> {
        let bad = |reason: String| GraphError::Export(format!("supernet: {reason}"));
        let live = self.graph.reachable();
        let mut seen = vec![false; self.options.len()];
        for e in &self.edges {
            let node = self
                .graph
                .nodes
                .get(e.node)
                .ok_or_else(|| bad(format!("edge node {} does not exist", e.node)))?;
            if node.op != Op::Mix {
                return Err(bad(format!(
                    "node {} is a {}, not a Mix",
                    e.node,
                    node.op.kind()
                )));
            }
            if live.binary_search(&e.node).is_err() {
                return Err(bad(format!(
                    "mixed edge {} does not reach the output",
                    e.node
                )));
            }
            let options = *self.options.get(e.choice).ok_or_else(|| {
                bad(format!(
                    "edge {} decides unknown choice {}",
                    e.node, e.choice
                ))
            })?;
            let want = options + usize::from(self.aux_skip);
            if node.inputs.len() != want {
                return Err(bad(format!(
                    "mixed edge {} has {} inputs, its choice {} needs {want}",
                    e.node,
                    node.inputs.len(),
                    e.choice
                )));
            }
            seen[e.choice] = true;
        }
        if let Some(c) = seen.iter().position(|s| !s) {
            return Err(bad(format!("choice {c} has no mixed edge")));
        }
        if let Some(ends) = &self.extreme_paths {
            for (name, path) in [("smallest", &ends.smallest), ("largest", &ends.largest)] {
                let fits = path.len() == self.options.len()
                    && path.iter().zip(&self.options).all(|(&o, &n)| o < n);
                if !fits {
                    return Err(bad(format!(
                        "the {name} path {path:?} does not pick one option per choice \
                         ({:?} options)",
                        self.options
                    )));
                }
            }
        }
        Ok(())
    }
}
