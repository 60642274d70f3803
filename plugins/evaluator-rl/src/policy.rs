//! The candidate network as a policy: the shape check against an environment, and acting
//! through an ONNX Runtime inference session of its current weights.

use nas_graph::{ExportOptions, Graph, Weights, export_inference};
use nas_rl::Env;
use nas_runtime::SessionSettings;
use ndarray::{ArrayD, IxDyn};
use ort::session::Session;
use ort::value::TensorRef;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::NAME;

/// The network must take one observation (`[obs]`, or any shape holding `obs` values, which
/// the observation is reshaped to) and output one logit per action (`[actions]`).
pub fn check_fit(graph: &Graph, env: &dyn Env) -> Result<(), String> {
    let shapes = graph
        .shapes()
        .map_err(|e| format!("{NAME}: the candidate network is invalid: {e}"))?;
    let (obs, actions, name) = (env.observation_size(), env.actions(), env.name());
    let values: usize = graph.input.iter().product();
    if values != obs {
        return Err(format!(
            "{NAME}: the network takes inputs of shape {:?} ({values} values), but `{name}` \
             observations have {obs} values; set `[space] input = [{obs}]`",
            graph.input
        ));
    }
    let out = &shapes[graph.output];
    if out.as_slice() != [actions] {
        return Err(format!(
            "{NAME}: the network outputs shape {out:?}, but `{name}` has {actions} actions; it \
             must output [{actions}] logits (set `[space] classes = {actions}`)"
        ));
    }
    if graph.nodes.iter().any(|n| n.op == nas_graph::Op::Mix) {
        return Err(format!(
            "{NAME}: the network has mixed edges (a one-shot supernet); derive an architecture first"
        ));
    }
    Ok(())
}

/// A policy network in inference mode (BatchNorm with its running statistics, no dropout).
pub struct Policy {
    session: Session,
    /// Per-sample input shape of the network.
    input: Vec<usize>,
    actions: usize,
}

impl Policy {
    /// An inference session of `graph` with `weights`.
    pub fn new(
        graph: &Graph,
        weights: &Weights,
        actions: usize,
        runtime: &SessionSettings,
    ) -> Result<Policy, String> {
        let model = export_inference(graph, weights, &ExportOptions::default())
            .map_err(|e| format!("{NAME}: cannot export the policy network: {e}"))?;
        let session = nas_runtime::session_from_bytes(&model, runtime)
            .map_err(|e| format!("{NAME}: cannot build the policy's session: {e}"))?;
        Ok(Policy {
            session,
            input: graph.input.clone(),
            actions,
        })
    }

    /// Logits `[n * actions]` of `n` observations laid end to end in `observations`.
    pub fn logits(&mut self, observations: &[f32], n: usize) -> Result<Vec<f32>, String> {
        let err = |e: ort::Error| format!("{NAME}: running the policy failed: {e}");
        let mut dims = vec![n];
        dims.extend(&self.input);
        let x = ArrayD::from_shape_vec(IxDyn(&dims), observations.to_vec())
            .map_err(|e| format!("{NAME}: observations do not fill the input: {e}"))?;
        let outputs = self
            .session
            .run(ort::inputs![TensorRef::from_array_view(&x).map_err(err)?])
            .map_err(err)?;
        let (_, logits) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        if logits.len() != n * self.actions {
            return Err(format!(
                "{NAME}: the policy returned {} logits for {n} observations of {} actions",
                logits.len(),
                self.actions
            ));
        }
        if logits.iter().any(|z| !z.is_finite()) {
            return Err(format!(
                "{NAME}: the policy's logits are not finite (training diverged); lower `lr`"
            ));
        }
        Ok(logits.to_vec())
    }
}

/// The most likely action (the first on ties, as ONNX `ArgMax`).
pub fn greedy(logits: &[f32]) -> usize {
    let mut best = 0;
    for (a, &z) in logits.iter().enumerate() {
        if z > logits[best] {
            best = a;
        }
    }
    best
}

/// An action drawn from `softmax(logits)` (one uniform draw from `rng`).
pub fn sample(logits: &[f32], rng: &mut ChaCha8Rng) -> usize {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &z| m.max(f64::from(z)));
    let weights: Vec<f64> = logits.iter().map(|&z| (f64::from(z) - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (a, w) in weights.iter().enumerate() {
        if u < *w {
            return a;
        }
        u -= w;
    }
    // Rounding left `u` past the last weight: the last action with any probability.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}
