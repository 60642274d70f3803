//! Small statistics over series of accuracies and scores.

/// Kendall's tau-b of two equally long series.
pub fn kendall_tau(x: &[f64], y: &[f64]) -> f64 {
    let (mut concordant, mut discordant, mut ties_x, mut ties_y) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let (dx, dy) = (x[i] - x[j], y[i] - y[j]);
            if dx == 0.0 && dy == 0.0 {
                continue;
            } else if dx == 0.0 {
                ties_x += 1.0;
            } else if dy == 0.0 {
                ties_y += 1.0;
            } else if dx * dy > 0.0 {
                concordant += 1.0;
            } else {
                discordant += 1.0;
            }
        }
    }
    let n = concordant + discordant;
    (concordant - discordant) / ((n + ties_x) * (n + ties_y)).sqrt()
}

/// The smallest value (infinity for none).
pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The mean of one network's test accuracies, the first plus the sum of the rest: every mean
/// is summed in this one order, as means of equal image counts tie often and a rounding
/// difference would move a percentile.
pub fn mean_of(tests: &[f64]) -> f64 {
    (tests[0] + tests[1..].iter().sum::<f64>()) / tests.len() as f64
}

pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}
