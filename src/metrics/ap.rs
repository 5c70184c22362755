//! Average precision as Ultralytics 8.4 computes it (`utils/metrics.py`: `smooth`, `compute_ap`, `ap_per_class`).
//!
//! * AP per class and IoU threshold: the precision envelope (running maximum from the right) of the
//!   precision/recall curve with sentinels, sampled at 101 recall points (`np.interp`) and integrated with the
//!   trapezoidal rule.
//! * P and R per class: read from precision- and recall-vs-confidence curves sampled at 1000 confidences in
//!   `[0, 1]`, at the single confidence that maximises the box-filter-smoothed (fraction 0.1) mean F1 over classes.
//! * Only classes present in the labels get a row; a class with labels but no predictions has AP = P = R = 0.

use super::numeric::{argmax, interp, interp_many, linspace, trapezoid};
use super::NIOU;

/// Box-filter smoothing of a 1-D curve with a window of about `2 * f * len` points (odd), padded with the end
/// values (Ultralytics' `smooth`).
pub fn smooth(y: &[f64], f: f64) -> Vec<f64> {
    if y.is_empty() {
        return Vec::new();
    }
    // Python's round() is half-to-even
    let nf = ((y.len() as f64 * f * 2.0).round_ties_even() as usize) / 2 + 1;
    let half = nf / 2;
    let mut yp = Vec::with_capacity(y.len() + 2 * half);
    yp.extend(std::iter::repeat_n(y[0], half));
    yp.extend_from_slice(y);
    yp.extend(std::iter::repeat_n(y[y.len() - 1], half));
    let w = 1.0 / nf as f64;
    (0..=yp.len() - nf)
        .map(|i| {
            let mut s = 0.0;
            for k in 0..nf {
                s += yp[i + k] * w;
            }
            s
        })
        .collect()
}

/// Result of [`compute_ap`].
#[derive(Debug, Clone)]
pub struct ApCurve {
    /// Average precision.
    pub ap: f64,
    /// Precision envelope with sentinels.
    pub mpre: Vec<f64>,
    /// Recall with sentinels.
    pub mrec: Vec<f64>,
}

/// AP of one precision/recall curve (recall non-decreasing), 101-point interpolation + trapezoid.
pub fn compute_ap(recall: &[f64], precision: &[f64]) -> ApCurve {
    let n = recall.len().min(precision.len());
    let (recall, precision) = (&recall[..n], &precision[..n]);
    let mut mrec = Vec::with_capacity(recall.len() + 3);
    mrec.push(0.0);
    mrec.extend_from_slice(recall);
    mrec.push(recall.last().copied().unwrap_or(1.0));
    mrec.push(1.0);
    let mut mpre = Vec::with_capacity(precision.len() + 3);
    mpre.push(1.0);
    mpre.extend_from_slice(precision);
    mpre.push(0.0);
    mpre.push(0.0);
    // envelope: running maximum from the right
    for i in (0..mpre.len() - 1).rev() {
        if mpre[i + 1] > mpre[i] || mpre[i + 1].is_nan() {
            mpre[i] = mpre[i + 1];
        }
    }
    let x = linspace(0.0, 1.0, 101);
    let y = interp_many(&x, &mrec, &mpre, None, None);
    ApCurve { ap: trapezoid(&y, &x), mpre, mrec }
}

/// Per-class results of [`ap_per_class`]; rows follow `classes` (sorted class ids present in the labels).
#[derive(Debug, Clone, Default)]
pub struct ApPerClass {
    /// Class ids that have labels, ascending.
    pub classes: Vec<usize>,
    /// Number of labels per row.
    pub n_labels: Vec<usize>,
    /// True positives at the max-F1 confidence (`round(r * n_labels)`).
    pub tp: Vec<f64>,
    /// False positives at the max-F1 confidence.
    pub fp: Vec<f64>,
    /// Precision at the max-F1 confidence.
    pub p: Vec<f64>,
    /// Recall at the max-F1 confidence.
    pub r: Vec<f64>,
    /// F1 at the max-F1 confidence.
    pub f1: Vec<f64>,
    /// AP at the 10 IoU thresholds 0.50:0.05:0.95.
    pub ap: Vec<[f64; NIOU]>,
    /// Index into `px` of the confidence that maximises the smoothed mean F1.
    pub best_index: usize,
    /// Confidence axis of the curves (1000 points in [0, 1]); also the recall axis of `prec_values`.
    pub px: Vec<f64>,
    /// Precision vs confidence, per row.
    pub p_curve: Vec<Vec<f64>>,
    /// Recall vs confidence, per row.
    pub r_curve: Vec<Vec<f64>>,
    /// F1 vs confidence, per row.
    pub f1_curve: Vec<Vec<f64>>,
    /// Precision envelope vs recall at IoU 0.5, per row (the PR curve).
    pub prec_values: Vec<Vec<f64>>,
}

const EPS: f64 = 1e-16;
const NPX: usize = 1000;

/// Ultralytics' `ap_per_class`.
///
/// `tp[i][t]`: prediction `i` is a true positive at IoU threshold `t`; `conf[i]`, `pred_cls[i]` its score and class;
/// `target_cls`: the class of every label of every image. Predictions are ranked by descending confidence (stable:
/// equal confidences keep their input order; NumPy's quicksort leaves that order unspecified).
///
/// Errors when `tp`, `conf` and `pred_cls` do not have the same length.
pub fn ap_per_class(
    tp: &[[bool; NIOU]],
    conf: &[f32],
    pred_cls: &[usize],
    target_cls: &[usize],
) -> anyhow::Result<ApPerClass> {
    if tp.len() != conf.len() || tp.len() != pred_cls.len() {
        anyhow::bail!(
            "ap_per_class: {} tp rows, {} confidences and {} predicted classes must be as many",
            tp.len(),
            conf.len(),
            pred_cls.len()
        );
    }
    Ok(ap_per_class_checked(tp, conf, pred_cls, target_cls))
}

/// [`ap_per_class`] on inputs of equal length.
pub(crate) fn ap_per_class_checked(
    tp: &[[bool; NIOU]],
    conf: &[f32],
    pred_cls: &[usize],
    target_cls: &[usize],
) -> ApPerClass {
    let (classes, n_labels) = class_counts(target_cls);
    let nc = classes.len();
    let px = linspace(0.0, 1.0, NPX);
    let mut ap = vec![[0f64; NIOU]; nc];
    let mut p_curve = vec![vec![0f64; NPX]; nc];
    let mut r_curve = vec![vec![0f64; NPX]; nc];
    let mut prec_values = Vec::with_capacity(nc);
    for (ci, ranked) in ranked_by_class(conf, pred_cls, &classes).iter().enumerate() {
        if ranked.is_empty() || n_labels[ci] == 0 {
            prec_values.push(vec![0f64; NPX]);
            continue;
        }
        let curves = class_curves(ranked, tp, conf, n_labels[ci], &px);
        (ap[ci], p_curve[ci], r_curve[ci]) = (curves.ap, curves.p, curves.r);
        prec_values.push(curves.pr);
    }
    let f1_curve: Vec<Vec<f64>> = (0..nc)
        .map(|ci| {
            (0..NPX).map(|k| 2.0 * p_curve[ci][k] * r_curve[ci][k] / (p_curve[ci][k] + r_curve[ci][k] + EPS)).collect()
        })
        .collect();
    let best_index = best_f1_index(&f1_curve);
    let p: Vec<f64> = p_curve.iter().map(|c| c[best_index]).collect();
    let r: Vec<f64> = r_curve.iter().map(|c| c[best_index]).collect();
    let f1: Vec<f64> = f1_curve.iter().map(|c| c[best_index]).collect();
    let tp_out: Vec<f64> = (0..nc).map(|i| (r[i] * n_labels[i] as f64).round_ties_even()).collect();
    let fp_out: Vec<f64> = (0..nc).map(|i| (tp_out[i] / (p[i] + EPS) - tp_out[i]).round_ties_even()).collect();
    ApPerClass {
        classes,
        n_labels,
        tp: tp_out,
        fp: fp_out,
        p,
        r,
        f1,
        ap,
        best_index,
        px,
        p_curve,
        r_curve,
        f1_curve,
        prec_values,
    }
}

/// The labelled classes, ascending, and how many labels each has.
fn class_counts(target_cls: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut classes: Vec<usize> = target_cls.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let n_labels = classes.iter().map(|c| target_cls.iter().filter(|&&t| t == *c).count()).collect();
    (classes, n_labels)
}

/// The predictions of each labelled class, ranked by descending confidence (stable).
fn ranked_by_class(conf: &[f32], pred_cls: &[usize], classes: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..conf.len()).collect();
    order.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]));
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
    for &i in &order {
        if let Ok(ci) = classes.binary_search(&pred_cls[i]) {
            by_class[ci].push(i);
        }
    }
    by_class
}

/// One class's results: AP at every IoU threshold, precision and recall against confidence, and the precision
/// envelope against recall at IoU 0.5, on the `NPX` grid `px`.
struct ClassCurves {
    ap: [f64; NIOU],
    p: Vec<f64>,
    r: Vec<f64>,
    pr: Vec<f64>,
}

/// [`ClassCurves`] of the class whose predictions are `ranked`, with `n_labels` labels.
fn class_curves(ranked: &[usize], tp: &[[bool; NIOU]], conf: &[f32], n_labels: usize, px: &[f64]) -> ClassCurves {
    let (recall, precision) = cumulative_recall_precision(ranked, tp, n_labels);
    let neg_px: Vec<f64> = px.iter().map(|v| -v).collect();
    let neg_conf: Vec<f64> = ranked.iter().map(|&i| -(conf[i] as f64)).collect();
    let rec0: Vec<f64> = recall.iter().map(|r| r[0]).collect();
    let pre0: Vec<f64> = precision.iter().map(|p| p[0]).collect();
    let mut out = ClassCurves {
        ap: [0.0; NIOU],
        p: interp_many(&neg_px, &neg_conf, &pre0, Some(1.0), None),
        r: interp_many(&neg_px, &neg_conf, &rec0, Some(0.0), None),
        pr: Vec::new(),
    };
    for t in 0..NIOU {
        let rt: Vec<f64> = recall.iter().map(|r| r[t]).collect();
        let pt: Vec<f64> = precision.iter().map(|p| p[t]).collect();
        let curve = compute_ap(&rt, &pt);
        out.ap[t] = curve.ap;
        if t == 0 {
            let (l, r) = (curve.mpre[0], curve.mpre[curve.mpre.len() - 1]);
            out.pr = px.iter().map(|&x| interp(x, &curve.mrec, &curve.mpre, l, r)).collect();
        }
    }
    out
}

/// Recall and precision after each of the `ranked` predictions, at every IoU threshold.
fn cumulative_recall_precision(
    ranked: &[usize],
    tp: &[[bool; NIOU]],
    n_labels: usize,
) -> (Vec<[f64; NIOU]>, Vec<[f64; NIOU]>) {
    let denom = n_labels as f64 + EPS;
    let mut recall = vec![[0f64; NIOU]; ranked.len()];
    let mut precision = vec![[0f64; NIOU]; ranked.len()];
    for t in 0..NIOU {
        let (mut tpc, mut fpc) = (0u64, 0u64);
        for (k, &i) in ranked.iter().enumerate() {
            if tp[i][t] {
                tpc += 1;
            } else {
                fpc += 1;
            }
            recall[k][t] = tpc as f64 / denom;
            precision[k][t] = tpc as f64 / (tpc + fpc) as f64;
        }
    }
    (recall, precision)
}

/// The confidence index of the best mean F1 over classes (smoothed), where P, R and F1 are reported.
fn best_f1_index(f1_curve: &[Vec<f64>]) -> usize {
    if f1_curve.is_empty() {
        return 0;
    }
    // Mean over classes, accumulated row by row as NumPy reduces axis 0.
    let mut mean = vec![0f64; NPX];
    for row in f1_curve {
        for k in 0..NPX {
            mean[k] += row[k];
        }
    }
    for v in &mut mean {
        *v /= f1_curve.len() as f64;
    }
    argmax(&smooth(&mean, 0.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_detector_scores_0_995() {
        let c = compute_ap(&[0.5, 1.0], &[1.0, 1.0]);
        // the recall=1 sentinel carries precision 0, so a perfect curve scores 0.995 (as in Ultralytics)
        assert!((c.ap - 0.995).abs() < 1e-12);
    }

    #[test]
    fn smooth_window() {
        let y = vec![1.0; 1000];
        let s = smooth(&y, 0.1);
        assert_eq!(s.len(), 1000);
        assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-12));
    }

    #[test]
    fn empty_inputs() {
        let r = ap_per_class(&[], &[], &[], &[]).unwrap();
        assert!(r.classes.is_empty());
        assert!(ap_per_class(&[], &[0.5], &[], &[]).is_err());
        let r = ap_per_class(&[], &[], &[], &[3, 3]).unwrap();
        assert_eq!(r.classes, vec![3]);
        assert_eq!(r.ap[0], [0.0; NIOU]);
        assert_eq!(r.p[0], 0.0);
    }
}
