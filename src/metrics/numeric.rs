//! Small numeric helpers that reproduce NumPy's results (summation order, `interp`, `linspace`, rounding), so that
//! ember's metrics agree with Ultralytics' NumPy code to the last few bits.

/// NumPy's pairwise summation (`np.add.reduce` on a contiguous `float64` array).
pub fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// NumPy's `mean` of a 1-D `float64` array (0 for an empty slice, where NumPy would warn and give NaN).
pub fn mean(a: &[f64]) -> f64 {
    if a.is_empty() {
        0.0
    } else {
        pairwise_sum(a) / a.len() as f64
    }
}

/// `np.linspace(start, stop, num)` with its default `endpoint=True`.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            v[num - 1] = stop;
            v
        }
    }
}

/// Index of the largest `j` with `xp[j] <= x` (`xp` non-decreasing), `None` when `x < xp[0]`.
fn search_right(x: f64, xp: &[f64]) -> Option<usize> {
    // partition_point gives the first index with xp[j] > x
    let p = xp.partition_point(|&v| v <= x);
    if p == 0 {
        None
    } else {
        Some(p - 1)
    }
}

/// `np.interp(x, xp, fp, left, right)` for one point (`xp` non-decreasing). Extra points of the longer of `xp`
/// and `fp` are ignored; with no points the result is NaN (NumPy raises).
pub fn interp(x: f64, xp: &[f64], fp: &[f64], left: f64, right: f64) -> f64 {
    let n = xp.len().min(fp.len());
    let (xp, fp) = (&xp[..n], &fp[..n]);
    if n == 0 {
        return f64::NAN;
    }
    if x.is_nan() {
        return x;
    }
    if x > xp[n - 1] {
        return right;
    }
    if x < xp[0] {
        return left;
    }
    let j = match search_right(x, xp) {
        None => return left,
        Some(j) => j,
    };
    if j == n - 1 || xp[j] == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    let mut r = slope * (x - xp[j]) + fp[j];
    if r.is_nan() {
        r = slope * (x - xp[j + 1]) + fp[j + 1];
        if r.is_nan() && fp[j] == fp[j + 1] {
            r = fp[j];
        }
    }
    r
}

/// `np.interp` over many points with the default `left = fp[0]`, `right = fp[-1]` unless given.
pub fn interp_many(xs: &[f64], xp: &[f64], fp: &[f64], left: Option<f64>, right: Option<f64>) -> Vec<f64> {
    let l = left.unwrap_or(fp.first().copied().unwrap_or(f64::NAN));
    let r = right.unwrap_or(fp.last().copied().unwrap_or(f64::NAN));
    xs.iter().map(|&x| interp(x, xp, fp, l, r)).collect()
}

/// `np.trapezoid(y, x)`.
pub fn trapezoid(y: &[f64], x: &[f64]) -> f64 {
    if y.len() < 2 {
        return 0.0;
    }
    let terms: Vec<f64> = (0..y.len() - 1).map(|i| (x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2.0).collect();
    pairwise_sum(&terms)
}

/// Index of the first maximum (NumPy `argmax`; NaN wins like in NumPy).
pub fn argmax(a: &[f64]) -> usize {
    let mut best = 0;
    for i in 0..a.len() {
        if a[i].is_nan() {
            return i;
        }
        if a[i] > a[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interp_matches_numpy_rules() {
        let xp = [0.0, 1.0, 1.0, 2.0];
        let fp = [0.0, 10.0, 20.0, 30.0];
        assert_eq!(interp(-1.0, &xp, &fp, -5.0, 99.0), -5.0);
        assert_eq!(interp(3.0, &xp, &fp, -5.0, 99.0), 99.0);
        assert_eq!(interp(0.5, &xp, &fp, 0.0, 0.0), 5.0);
        // on a repeated xp value NumPy takes the last one
        assert_eq!(interp(1.0, &xp, &fp, 0.0, 0.0), 20.0);
        assert_eq!(interp(2.0, &xp, &fp, 0.0, 0.0), 30.0);
    }

    #[test]
    fn pairwise_sum_small_and_large() {
        let v: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        assert_eq!(pairwise_sum(&v), 499500.0);
        assert_eq!(pairwise_sum(&[]), 0.0);
        assert_eq!(mean(&[1.0, 2.0, 3.0]), 2.0);
    }

    #[test]
    fn linspace_endpoints() {
        let x = linspace(0.0, 1.0, 101);
        assert_eq!(x[0], 0.0);
        assert_eq!(x[100], 1.0);
        assert_eq!(x[1], 0.01);
    }
}
