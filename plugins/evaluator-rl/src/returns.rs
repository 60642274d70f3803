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

/// The baseline of each time step: the mean of `G_t` over the episodes that lasted past
/// step `t` (as long as the longest episode).
pub fn time_baseline(returns: &[Vec<f64>]) -> Vec<f64> {
    let longest = returns.iter().map(Vec::len).max().unwrap_or(0);
    let mut sum = vec![0.0; longest];
    let mut count = vec![0usize; longest];
    for episode in returns {
        for (t, g) in episode.iter().enumerate() {
            sum[t] += g;
            count[t] += 1;
        }
    }
    sum.iter().zip(&count).map(|(s, &n)| s / n as f64).collect()
}

/// Advantages `[G_t - b_t]` divided by their root mean square, or all 0 when that is ~0 (no
/// signal to scale up).
pub fn normalized(advantages: &[f64]) -> Vec<f64> {
    let n = advantages.len().max(1) as f64;
    let rms = (advantages.iter().map(|a| a * a).sum::<f64>() / n).sqrt();
    if rms <= 1e-8 {
        return vec![0.0; advantages.len()];
    }
    advantages.iter().map(|a| a / rms).collect()
}

/// The advantages of a batch of episodes (each given by its rewards), concatenated in
/// episode and step order: each step's discounted return less the [`time_baseline`] of its
/// step, divided by their root mean square when `normalize`.
///
/// A time-step baseline (rather than one mean over all steps) makes episodes that went
/// alike carry no signal: a batch of Acrobot episodes that all hit the 500-step limit gives
/// zero advantages, where a single mean would push early actions down and late ones up for
/// no reason. It also means one episode alone teaches nothing.
pub fn batch_advantages(episodes: &[&[f64]], gamma: f64, normalize: bool) -> Vec<f64> {
    let returns: Vec<Vec<f64>> = episodes.iter().map(|r| returns_to_go(r, gamma)).collect();
    let baseline = time_baseline(&returns);
    let advantages: Vec<f64> = returns
        .iter()
        .flat_map(|g| g.iter().zip(&baseline).map(|(g, b)| g - b))
        .collect();
    if normalize {
        normalized(&advantages)
    } else {
        advantages
    }
}
