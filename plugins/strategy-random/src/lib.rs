//! Random search: every choice sampled uniformly and independently, from a seeded generator
//! whose full state is saved, so a resumed study draws exactly what an uninterrupted one would.

use nas_plugin::{
    ChoiceKind, Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext,
};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub struct RandomSearch {
    space: SpaceDescriptor,
    rng: ChaCha8Rng,
}

/// Draws one value for a choice.
pub fn sample_choice(kind: &ChoiceKind, rng: &mut impl Rng) -> f64 {
    match kind {
        ChoiceKind::Categorical { options } => rng.random_range(0..options.len()) as f64,
        ChoiceKind::Integer { low, high } => rng.random_range(*low..=*high) as f64,
        ChoiceKind::Float { low, high, log } => {
            if *log {
                // exp(ln(x)) can overshoot x by an ulp.
                rng.random_range(low.ln()..=high.ln())
                    .exp()
                    .clamp(*low, *high)
            } else {
                rng.random_range(*low..=*high)
            }
        }
    }
}

impl Strategy for RandomSearch {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        if let Some(key) = ctx.config.as_object().and_then(|m| m.keys().next()) {
            return Err(format!("random has no option `{key}`").into());
        }
        Ok(RandomSearch {
            space: ctx.space,
            rng: ChaCha8Rng::seed_from_u64(ctx.seed),
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        Ok((0..n)
            .map(|_| Proposal {
                values: self
                    .space
                    .choices
                    .iter()
                    .map(|c| sample_choice(&c.kind, &mut self.rng))
                    .collect(),
                fidelity: None,
            })
            .collect())
    }

    fn tell(&mut self, _observations: &[Observation]) -> Result<(), PluginError> {
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        Ok(serde_json::to_value(&self.rng)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        self.rng = serde_json::from_value(state)?;
        Ok(())
    }
}

nas_plugin::export_strategy!("random", RandomSearch);
