//! A study's strategies: plugins (dynamic libraries, the usual case) and the built-in
//! one-shot strategies ([`crate::oneshot`]), called alike by the study loop.

use nas_plugin::host::StrategyHandle;
use nas_plugin::{Observation, Proposal};

use crate::oneshot::{OneShotStrategy, SupernetProgress};

pub enum StrategyInstance {
    Plugin(StrategyHandle),
    OneShot(Box<OneShotStrategy>),
}

impl StrategyInstance {
    /// Up to `n` proposals; a one-shot strategy reports its supernet's epochs to `report`.
    pub fn ask(
        &mut self,
        n: usize,
        report: &mut dyn FnMut(SupernetProgress<'_>),
    ) -> anyhow::Result<Vec<Proposal>> {
        match self {
            StrategyInstance::Plugin(h) => Ok(h.ask(n)?),
            StrategyInstance::OneShot(s) => s.ask(n, report),
        }
    }

    pub fn tell(&mut self, observations: &[Observation]) -> anyhow::Result<()> {
        match self {
            StrategyInstance::Plugin(h) => Ok(h.tell(observations)?),
            StrategyInstance::OneShot(s) => s.tell(observations),
        }
    }

    pub fn save(&mut self) -> anyhow::Result<serde_json::Value> {
        match self {
            StrategyInstance::Plugin(h) => Ok(h.save()?),
            StrategyInstance::OneShot(s) => s.save(),
        }
    }

    pub fn restore(&mut self, state: &serde_json::Value) -> anyhow::Result<()> {
        match self {
            StrategyInstance::Plugin(h) => Ok(h.restore(state)?),
            StrategyInstance::OneShot(s) => s.restore(state),
        }
    }
}
