//! Small dense float64 linear algebra for batch-sized matrices (row-major `n x n`).

/// `log |det(a)|` by LU with partial pivoting; `-inf` for a singular matrix (NumPy's
/// `slogdet` second value, which NASWOT reports whatever the sign).
pub fn log_abs_det(a: &[f64], n: usize) -> f64 {
    assert_eq!(a.len(), n * n, "matrix size");
    let mut m = a.to_vec();
    let mut log_det = 0.0;
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))
            .expect("non-empty range");
        let p = m[pivot * n + col];
        if p == 0.0 || !p.is_finite() {
            return f64::NEG_INFINITY;
        }
        if pivot != col {
            for k in 0..n {
                m.swap(pivot * n + k, col * n + k);
            }
        }
        log_det += p.abs().ln();
        for row in col + 1..n {
            let f = m[row * n + col] / p;
            if f != 0.0 {
                for k in col..n {
                    m[row * n + k] -= f * m[col * n + k];
                }
            }
        }
    }
    log_det
}

/// Eigenvalues of a symmetric matrix (cyclic Jacobi rotations), ascending.
pub fn symmetric_eigenvalues(a: &[f64], n: usize) -> Vec<f64> {
    assert_eq!(a.len(), n * n, "matrix size");
    let mut m = a.to_vec();
    let scale: f64 = m
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j] * m[i * n + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * akp - s * akq;
                    m[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * apk - s * aqk;
                    m[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut ev: Vec<f64> = (0..n).map(|i| m[i * n + i]).collect();
    ev.sort_by(f64::total_cmp);
    ev
}

/// Pearson correlation matrix of the rows of `x` (`rows x cols`), as `numpy.corrcoef`;
/// `None` when a row is constant (its correlations are undefined).
pub fn corrcoef(x: &[f64], rows: usize, cols: usize) -> Option<Vec<f64>> {
    assert_eq!(x.len(), rows * cols, "matrix size");
    let mut centred = Vec::with_capacity(x.len());
    let mut norms = Vec::with_capacity(rows);
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mean = row.iter().sum::<f64>() / cols as f64;
        let c: Vec<f64> = row.iter().map(|v| v - mean).collect();
        let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return None;
        }
        centred.extend(c);
        norms.push(norm);
    }
    let mut out = vec![0.0; rows * rows];
    for i in 0..rows {
        for j in i..rows {
            let (a, b) = (
                &centred[i * cols..(i + 1) * cols],
                &centred[j * cols..(j + 1) * cols],
            );
            let dot: f64 = a.iter().zip(b).map(|(u, v)| u * v).sum();
            let r = (dot / (norms[i] * norms[j])).clamp(-1.0, 1.0);
            out[i * rows + j] = r;
            out[j * rows + i] = r;
        }
    }
    Some(out)
}

/// Average ranks (1-based; ties share the mean of their positions).
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Spearman rank correlation (Pearson correlation of average ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "paired samples");
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}
