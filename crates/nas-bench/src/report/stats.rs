//! Summary statistics over seeds: mean, sample standard deviation, confidence intervals,
//! medians.

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation (divisor `n - 1`); 0 for a single value, `None` for none.
pub fn std_dev(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    if values.len() < 2 {
        return Some(0.0);
    }
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// Median (the mean of the two middle values for an even count); `None` for none.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The `q` quantile (0..=1) by linear interpolation between the closest ranks (R's type 7,
/// the median at 0.5); infinite values (e.g. runs that never got there) sort last and make
/// every quantile that touches them infinite. `None` for no values.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, frac) = (h.floor() as usize, h - h.floor());
    if frac == 0.0 {
        return Some(v[lo]);
    }
    let (a, b) = (v[lo], v[lo + 1]);
    Some(if a.is_infinite() || b.is_infinite() {
        f64::INFINITY
    } else {
        a + frac * (b - a)
    })
}

/// Two-sided 97.5 % quantile of Student's t distribution with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => {
            // Cornish-Fisher expansion around the normal quantile; error < 1e-3 beyond 30.
            let z: f64 = 1.959_964;
            let d = df as f64;
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

/// Half-width of the 95 % confidence interval of the mean (Student's t); 0 for one value,
/// `None` for none.
pub fn ci95_half_width(values: &[f64]) -> Option<f64> {
    let s = std_dev(values)?;
    let n = values.len();
    if n < 2 {
        return Some(0.0);
    }
    Some(t_975(n - 1) * s / (n as f64).sqrt())
}

/// Mean and sample standard deviation together.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    Some((mean(values)?, std_dev(values)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn mean_and_sample_std() {
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert!(close(mean(&v).unwrap(), 5.0));
        // Population std is 2; the sample std divides by n - 1 = 7.
        assert!(close(std_dev(&v).unwrap(), (32.0f64 / 7.0).sqrt()));
        assert_eq!(mean(&[]), None);
        assert_eq!(std_dev(&[]), None);
        assert_eq!(std_dev(&[3.0]), Some(0.0));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn quantiles_interpolate_and_keep_censored_runs_last() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), median(&v));
        assert!(close(quantile(&v, 0.9).unwrap(), 9.1));
        assert_eq!(quantile(&v, 1.0), Some(10.0));
        // One run in ten never got there: the median is finite, the 90th percentile is not.
        let mut censored = v.clone();
        censored[3] = f64::INFINITY;
        assert!(close(quantile(&censored, 0.5).unwrap(), 6.5));
        assert_eq!(quantile(&censored, 0.9), Some(f64::INFINITY));
        assert_eq!(quantile(&[], 0.9), None);
    }

    #[test]
    fn confidence_interval_uses_student_t() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        // s = sqrt(2.5), t(4) = 2.776
        let expected = 2.776 * 2.5f64.sqrt() / 5f64.sqrt();
        assert!(close(ci95_half_width(&v).unwrap(), expected));
        assert!((t_975(31) - 2.040).abs() < 2e-3, "{}", t_975(31));
        assert!((t_975(1000) - 1.962).abs() < 2e-3);
        assert!(t_975(40) < t_975(30) && t_975(40) > 1.96);
    }
}
