//! Random search: every choice sampled uniformly and independently, from a seeded generator
//! whose full state is saved, so a resumed study draws exactly what an uninterrupted one would.

use nas_plugin::kit::{self, options::parse_options};
use nas_plugin::{Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext};
use serde::Deserialize;

/// Random search has no options; the empty struct makes any key an error that says so.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {}

pub struct RandomSearch {
    space: SpaceDescriptor,
    rng: kit::Rng,
}

impl Strategy for RandomSearch {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        parse_options::<Options>("random", &ctx.config)?;
        kit::check_space("random", &ctx.space)?;
        Ok(RandomSearch {
            space: ctx.space,
            rng: kit::seeded(ctx.seed),
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        Ok((0..n)
            .map(|_| Proposal {
                values: kit::sample_point(&self.space, &mut self.rng),
                fidelity: None,
                parent: None,
            })
            .collect())
    }

    fn tell(&mut self, _observations: &[Observation]) -> Result<(), PluginError> {
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        Ok(kit::save_state("random", &self.rng)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        self.rng = kit::restore_state("random", state)?;
        Ok(())
    }
}

nas_plugin::export_strategy!("random", RandomSearch);

#[cfg(test)]
mod tests {
    use super::RandomSearch;

    #[test]
    fn conforms_to_the_strategy_contract() {
        nas_plugin::conformance::check::<RandomSearch>(serde_json::Value::Null);
    }

    #[test]
    fn an_option_is_an_error() {
        let ctx = nas_plugin::StrategyContext {
            space: nas_plugin::conformance::sample_spaces().remove(0).1,
            objectives: vec![],
            seed: 0,
            config: serde_json::json!({"population": 3}),
        };
        let e = <RandomSearch as nas_plugin::Strategy>::new(ctx)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "random has no option `population`; it takes no options"
        );
    }
}
