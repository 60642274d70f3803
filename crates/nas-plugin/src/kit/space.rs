use crate::messages::{ChoiceKind, SpaceDescriptor};

/// Rejects choices nothing can be sampled from (no options, low > high, a non-finite bound, a
/// log-scaled range reaching zero), so `ask` never panics on them. `strategy` names the
/// strategy in the message, e.g. "evolution: choice `op` has no options".
pub fn check_space(strategy: &str, space: &SpaceDescriptor) -> Result<(), String> {
    for c in &space.choices {
        let problem = match &c.kind {
            ChoiceKind::Categorical { options } if options.is_empty() => "has no options",
            ChoiceKind::Integer { low, high } if low > high => "has low > high",
            ChoiceKind::Float { low, high, .. } if !(low.is_finite() && high.is_finite()) => {
                "has a bound that is not finite"
            }
            ChoiceKind::Float { low, high, .. } if low > high => "has low > high",
            ChoiceKind::Float { low, log: true, .. } if *low <= 0.0 => {
                "is log-scaled but its low bound is not positive"
            }
            _ => continue,
        };
        return Err(format!("{strategy}: choice `{}` {problem}", c.name));
    }
    Ok(())
}
