//! Discounted returns and the advantages REINFORCE weighs each (state, action) pair by.

/// The discounted return from every step of one episode on: `G_t = r_t + gamma G_{t+1}`,
/// with `G = 0` after the last step (a truncated episode is not bootstrapped).
pub fn returns_to_go(rewards: &[f64], gamma: f64) -> Vec<f64> {
    let mut out = vec![0.0; rewards.len()];
    let mut g = 0.0;
    for (t, r) in rewards.iter().enumerate().rev() {
        g = r + gamma * g;
        out[t] = g;
    }
    out
}

/// Advantages of a batch of returns: each return less the batch mean (the baseline), divided
/// by the batch's standard deviation when `normalize` (unless it is ~0, as when every
/// episode of CartPole lasts 500 steps with `gamma = 1`, where all advantages are then 0).
pub fn advantages(returns: &[f64], normalize: bool) -> Vec<f64> {
    if returns.is_empty() {
        return Vec::new();
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let centred: Vec<f64> = returns.iter().map(|g| g - mean).collect();
    if !normalize {
        return centred;
    }
    let std = (centred.iter().map(|a| a * a).sum::<f64>() / n).sqrt();
    // Below this spread the returns are equal up to rounding: no signal to scale up.
    if std <= 1e-8 * mean.abs().max(1.0) {
        return vec![0.0; returns.len()];
    }
    centred.iter().map(|a| a / std).collect()
}

/// The advantages of a batch of episodes (their rewards, in order), concatenated in the same
/// order as their steps.
pub fn batch_advantages(episodes: &[&[f64]], gamma: f64, normalize: bool) -> Vec<f64> {
    let returns: Vec<f64> = episodes
        .iter()
        .flat_map(|rewards| returns_to_go(rewards, gamma))
        .collect();
    advantages(&returns, normalize)
}
