//! The detection head (Ultralytics' `Detect`): per level a box branch (`cv2`) and a class branch (`cv3`),
//! plus for end-to-end models a second, one-to-one pair (`one2one_cv2`, `one2one_cv3`) that sees detached
//! features so its NMS-free matching loss does not shape the backbone.

use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{backend::Backend, Tensor};

use super::anchors::anchors_onnx;
use super::conv::{Conv, Conv2d, Conv2dConfig, ConvConfig};
use super::head_output::{decode_onnx, BoxFormat, DetectOutput, HeadOutput};
use super::onnx::{Attr, OnnxGraph, ToOnnx};
use super::Cost;

/// [`Detect`] configuration: `Detect(nc, reg_max, end2end, ch)`.
#[derive(Config, Debug)]
pub struct DetectConfig {
    /// Number of classes.
    pub nc: usize,
    /// Input channels of each level, in stride order.
    pub channels: Vec<usize>,
    /// Stride of each level. Default: [8, 16, 32].
    #[config(default = "vec![8.0, 16.0, 32.0]")]
    pub strides: Vec<f32>,
    /// DFL bins per box side; 1 means direct ltrb regression (YOLO26). Default: 16.
    #[config(default = 16)]
    pub reg_max: usize,
    /// Add the one-to-one branch. Default: false.
    #[config(default = false)]
    pub end2end: bool,
    /// YOLOv8's class branch (two 3x3 convs) instead of the depth-wise one of YOLO11/YOLO26. Default: false.
    #[config(default = false)]
    pub legacy: bool,
}

/// Box branch of one level: `Sequential(Conv 3x3, Conv 3x3, Conv2d 1x1)`.
pub type BoxBranch<B> = (Conv<B>, Conv<B>, Conv2d<B>);

/// `Sequential(DWConv 3x3, Conv 1x1)` of the light class branch.
pub type DwPair<B> = (Conv<B>, Conv<B>);

/// Class branch of one level. The enum level does not appear in tensor names.
// Three per branch, built once; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ClsBranch<B: Backend> {
    /// YOLOv8: `Sequential(Conv 3x3, Conv 3x3, Conv2d 1x1)`.
    Legacy((Conv<B>, Conv<B>, Conv2d<B>)),
    /// YOLO11/YOLO26: `Sequential(Sequential(DWConv 3x3, Conv 1x1), Sequential(DWConv 3x3, Conv 1x1), Conv2d)`.
    Light((DwPair<B>, DwPair<B>, Conv2d<B>)),
}

/// The fixed DFL projection (`arange(reg_max)`), kept as a frozen tensor so checkpoints round-trip
/// (`dfl.conv.weight`); decoding computes the same expectation directly.
#[derive(Module, Debug)]
pub struct Dfl<B: Backend> {
    /// 1x1 convolution `reg_max -> 1` without bias, its weight `[1, reg_max, 1, 1]` holding
    /// `0, 1, .., reg_max - 1`, not trained.
    pub conv: Conv2d<B>,
}

/// Ultralytics' `Detect` head: per level a box branch and a class branch on the neck features, and for
/// end-to-end models a second, one-to-one pair. Its outputs are raw; [`DetectOutput`] decodes them.
#[derive(Module, Debug)]
pub struct Detect<B: Backend> {
    /// One-to-many box branch of each level: `4 * reg_max` channels.
    pub cv2: Vec<BoxBranch<B>>,
    /// One-to-many class branch of each level: `nc` logits.
    pub cv3: Vec<ClsBranch<B>>,
    /// DFL projection; `None` when `reg_max == 1` (direct ltrb regression, YOLO26).
    pub dfl: Option<Dfl<B>>,
    /// One-to-one (NMS-free) box branches, fed detached features; `None` unless end-to-end.
    pub one2one_cv2: Option<Vec<BoxBranch<B>>>,
    /// One-to-one class branches, fed detached features; `None` unless end-to-end.
    pub one2one_cv3: Option<Vec<ClsBranch<B>>>,
    /// Number of classes.
    pub nc: usize,
    /// DFL bins per box side; 1 means direct ltrb regression.
    pub reg_max: usize,
    /// Stride (input pixels per grid cell) of each level, in level order.
    pub strides: Vec<f32>,
}

impl DetectConfig {
    /// A new [`Detect`] on `device` with Ultralytics' widths (`c2 = max(16, ch[0] / 4, 4 * reg_max)` box,
    /// `c3 = max(ch[0], min(nc, 100))` class channels) and bias priors (`bias_init`: 2.0 for boxes,
    /// `ln(5 / nc / (640 / stride)^2)` for classes).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Detect<B> {
        let (nc, r) = (self.nc, self.reg_max);
        let c2 = 16.max(self.channels[0] / 4).max(4 * r);
        let c3 = self.channels[0].max(nc.min(100));
        let box_branch = |x: usize| -> BoxBranch<B> {
            let mut last = Conv2dConfig::new(c2, 4 * r).init(device);
            // A fresh parameter: mapping the old one's tensor would drop its require_grad.
            last.bias = Some(Param::from_tensor(Tensor::full([4 * r], 2.0, device)));
            (
                ConvConfig::new(x, c2).with_kernel(3).init(device),
                ConvConfig::new(c2, c2).with_kernel(3).init(device),
                last,
            )
        };
        let cls_branch = |x: usize, s: f32| -> ClsBranch<B> {
            // Prior: about 5 objects per 640x640 image spread over nc classes.
            let prior = (5.0 / nc as f64 / (640.0 / s as f64).powi(2)).ln();
            let mut last = Conv2dConfig::new(c3, nc).init(device);
            last.bias = Some(Param::from_tensor(Tensor::full([nc], prior, device)));
            if self.legacy {
                ClsBranch::Legacy((
                    ConvConfig::new(x, c3).with_kernel(3).init(device),
                    ConvConfig::new(c3, c3).with_kernel(3).init(device),
                    last,
                ))
            } else {
                ClsBranch::Light((
                    (ConvConfig::depthwise(x, x, 3, 1).init(device), ConvConfig::new(x, c3).init(device)),
                    (ConvConfig::depthwise(c3, c3, 3, 1).init(device), ConvConfig::new(c3, c3).init(device)),
                    last,
                ))
            }
        };
        let levels = || self.channels.iter().zip(&self.strides);
        let dfl = (r > 1).then(|| {
            let mut conv = Conv2dConfig::new(r, 1).with_bias(false).init(device);
            let arange = Tensor::<B, 1, burn::tensor::Int>::arange(0..r as i64, device).float();
            conv.weight = Param::from_tensor(arange.reshape([1, r, 1, 1])).set_require_grad(false);
            Dfl { conv }
        });
        Detect {
            cv2: levels().map(|(&x, _)| box_branch(x)).collect(),
            cv3: levels().map(|(&x, &s)| cls_branch(x, s)).collect(),
            dfl,
            one2one_cv2: self.end2end.then(|| levels().map(|(&x, _)| box_branch(x)).collect()),
            one2one_cv3: self.end2end.then(|| levels().map(|(&x, &s)| cls_branch(x, s)).collect()),
            nc,
            reg_max: r,
            strides: self.strides.clone(),
        }
    }
}

impl<B: Backend> ClsBranch<B> {
    /// Class logits `[b, nc, h, w]` of one level's features `[b, c, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            ClsBranch::Legacy((a, b, c)) => c.forward(b.forward(a.forward(x))),
            ClsBranch::Light(((a1, a2), (b1, b2), c)) => c.forward(b2.forward(b1.forward(a2.forward(a1.forward(x))))),
        }
    }

    /// Adds the branch's cost at an `h x w` level to `k`.
    pub fn cost(&self, h: usize, w: usize, k: &mut Cost) {
        match self {
            ClsBranch::Legacy((a, b, c)) => {
                k.conv(a, h, w);
                k.conv(b, h, w);
                k.conv2d(c, h, w);
            }
            ClsBranch::Light(((a1, a2), (b1, b2), c)) => {
                for conv in [a1, a2, b1, b2] {
                    k.conv(conv, h, w);
                }
                k.conv2d(c, h, w);
            }
        }
    }

    /// The last (bias-carrying, `nc`-sized) convolution.
    pub fn last(&self) -> &Conv2d<B> {
        match self {
            ClsBranch::Legacy((_, _, c)) | ClsBranch::Light((_, _, c)) => c,
        }
    }
}

fn box_forward<B: Backend>(b: &BoxBranch<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    b.2.forward(b.1.forward(b.0.forward(x)))
}

impl<B: Backend> Detect<B> {
    /// The parameters of the classification branches (`cv3`, and `one2one_cv3` when there is one), which
    /// Ultralytics' MuSGD trains at a higher learning rate.
    pub fn class_branch_params(&self) -> std::collections::HashSet<ParamId> {
        struct Ids(std::collections::HashSet<ParamId>);
        impl<B: Backend> ModuleVisitor<B> for Ids {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0.insert(param.id);
            }
        }
        let mut ids = Ids(Default::default());
        self.cv3.visit(&mut ids);
        self.one2one_cv3.visit(&mut ids);
        ids.0
    }

    /// Whether the head has the one-to-one (NMS-free) branch.
    pub fn end2end(&self) -> bool {
        self.one2one_cv2.is_some()
    }

    fn branch(&self, feats: &[Tensor<B, 4>], boxes: &[BoxBranch<B>], cls: &[ClsBranch<B>]) -> HeadOutput<B> {
        let mut bs = Vec::with_capacity(feats.len());
        let mut ss = Vec::with_capacity(feats.len());
        for (i, x) in feats.iter().enumerate() {
            let [b, _, h, w] = x.dims();
            bs.push(box_forward(&boxes[i], x.clone()).reshape([b, 4 * self.reg_max, h * w]));
            ss.push(cls[i].forward(x.clone()).reshape([b, self.nc, h * w]));
        }
        HeadOutput { boxes: Tensor::cat(bs, 2), scores: Tensor::cat(ss, 2) }
    }

    /// Raw outputs of both branches for the level features (stride order).
    pub fn forward(&self, feats: Vec<Tensor<B, 4>>) -> DetectOutput<B> {
        let feature_sizes = feats
            .iter()
            .map(|x| {
                let [_, _, h, w] = x.dims();
                [h, w]
            })
            .collect();
        let one2many = self.branch(&feats, &self.cv2, &self.cv3);
        let one2one = match (&self.one2one_cv2, &self.one2one_cv3) {
            (Some(b), Some(c)) => {
                let detached: Vec<_> = feats.into_iter().map(|x| x.detach()).collect();
                Some(self.branch(&detached, b, c))
            }
            _ => None,
        };
        DetectOutput { one2many, one2one, feature_sizes, strides: self.strides.clone(), reg_max: self.reg_max }
    }

    /// Adds the head's cost to `k` for level feature maps of `sizes` (`(h, w)` per level, in grid cells), the
    /// one-to-many branch also counted into `k`'s `o2m_*` shares.
    pub fn cost(&self, sizes: &[(usize, usize)], k: &mut Cost) {
        let branch = |boxes: &[BoxBranch<B>], cls: &[ClsBranch<B>], k: &mut Cost| {
            for (i, &(h, w)) in sizes.iter().enumerate() {
                k.conv(&boxes[i].0, h, w);
                k.conv(&boxes[i].1, h, w);
                k.conv2d(&boxes[i].2, h, w);
                cls[i].cost(h, w, k);
            }
        };
        k.begin_one2many();
        branch(&self.cv2, &self.cv3, k);
        k.end_one2many();
        if let (Some(b), Some(c)) = (&self.one2one_cv2, &self.one2one_cv3) {
            branch(b, c, k);
        }
        if self.dfl.is_some() {
            k.dfl(self.reg_max, sizes.iter().map(|(h, w)| h * w).sum());
        }
    }
}

/// What an exported head computes.
#[derive(Debug, Clone)]
pub struct HeadExport {
    /// The input size (h, w) of a static graph, whose anchors are then constants; `None` for a dynamic one.
    pub imgsz: Option<[usize; 2]>,
    /// The NMS-free `[b, k, 6]` output of the one-to-one branch instead of the one-to-many `[b, 4 + nc, A]`.
    pub end2end: bool,
    /// `k` of the NMS-free output: at most this many detections.
    pub max_det: usize,
}

impl<B: Backend> ToOnnx for ClsBranch<B> {
    fn to_onnx(&self, g: &mut dyn OnnxGraph, x: &str) -> String {
        let (convs, last): (Vec<&Conv<B>>, &Conv2d<B>) = match self {
            ClsBranch::Legacy((a, b, last)) => (vec![a, b], last),
            ClsBranch::Light(((a1, a2), (b1, b2), last)) => (vec![a1, a2, b1, b2], last),
        };
        let mut y = x.to_string();
        for c in convs {
            y = c.to_onnx(g, &y);
        }
        last.to_onnx(g, &y)
    }
}

impl<B: Backend> Detect<B> {
    /// The head in an ONNX graph, on the level features `feats`: decoded boxes (input pixels) and sigmoid scores,
    /// `[b, 4 + nc, A]` (xywh, for NMS), or with `end2end` the one-to-one branch's top `max_det` as
    /// `[b, k, 6]` rows `x1, y1, x2, y2, score, class`. The caller checks that `end2end` models have that branch.
    pub fn to_onnx(&self, g: &mut dyn OnnxGraph, feats: &[String], export: &HeadExport) -> String {
        let sizes = export
            .imgsz
            .map(|[h, w]| self.strides.iter().map(|&s| [h / s as usize, w / s as usize]).collect::<Vec<_>>());
        let anchors = anchors_onnx(g, feats, &self.strides, sizes.as_deref());
        let anchors = (anchors.0.as_str(), anchors.1.as_str());
        match (&self.one2one_cv2, &self.one2one_cv3) {
            (Some(b), Some(c)) if export.end2end => {
                let (bx, sc) = self.branch_onnx(g, feats, b, c);
                let decoded = decode_onnx(g, (&bx, &sc), self.reg_max, anchors, BoxFormat::Xyxy);
                end2end_topk_onnx(g, &decoded, self.nc, export.max_det)
            }
            _ => {
                let (bx, sc) = self.branch_onnx(g, feats, &self.cv2, &self.cv3);
                decode_onnx(g, (&bx, &sc), self.reg_max, anchors, BoxFormat::Xywh)
            }
        }
    }

    /// As [`Detect::branch`]: raw `[b, 4 * reg_max, A]` box and `[b, nc, A]` class logits.
    fn branch_onnx(
        &self,
        g: &mut dyn OnnxGraph,
        feats: &[String],
        boxes: &[BoxBranch<B>],
        cls: &[ClsBranch<B>],
    ) -> (String, String) {
        let (mut bs, mut ss) = (Vec::new(), Vec::new());
        for (i, x) in feats.iter().enumerate() {
            let b = boxes[i].0.to_onnx(g, x);
            let b = boxes[i].1.to_onnx(g, &b);
            let b = boxes[i].2.to_onnx(g, &b);
            bs.push(g.reshape(&b, &[0, 4 * self.reg_max as i64, -1]));
            let s = cls[i].to_onnx(g, x);
            ss.push(g.reshape(&s, &[0, self.nc as i64, -1]));
        }
        let br: Vec<&str> = bs.iter().map(String::as_str).collect();
        let sr: Vec<&str> = ss.iter().map(String::as_str).collect();
        (g.concat(&br, 2), g.concat(&sr, 2))
    }
}

/// Ultralytics' end-to-end top-k (`Detect.postprocess`): the `k` anchors with the highest best-class score, then
/// the `k` highest (anchor, class) scores among them, `k = min(max_det, anchors)`. `preds` is `[b, 4 + nc, A]` with
/// xyxy boxes; the result `[b, k, 6]` is in descending score order.
fn end2end_topk_onnx(g: &mut dyn OnnxGraph, preds: &str, nc: usize, max_det: usize) -> String {
    let p = g.transpose(preds, &[0, 2, 1]); // [b, A, 4 + nc]
    let parts = g.split(&p, &[4, nc], 2);
    let (boxes, scores) = (&parts[0], &parts[1]);
    let best = g.reduce_max(scores, 2); // [b, A]
    let shape = g.op("Shape", &[&best], vec![]);
    let anchors = g.slice1(&shape, 1, 2);
    let md = g.ints("max_det", &[max_det as i64]);
    let k = g.op("Min", &[&anchors, &md], vec![]);
    let topk_attrs = || vec![Attr::Int("axis", -1), Attr::Int("largest", 1), Attr::Int("sorted", 1)];
    let top = g.op_n("TopK", &[&best, &k], 2, topk_attrs());
    let ori = g.unsqueeze(&top[1], &[2]); // [b, k, 1]
    let rep_nc = g.ints("repeats", &[1, 1, nc as i64]);
    let ori_nc = g.op("Tile", &[&ori, &rep_nc], vec![]);
    let cand = g.op("GatherElements", &[scores, &ori_nc], vec![Attr::Int("axis", 1)]); // [b, k, nc]
    let flat = g.reshape(&cand, &[0, -1]);
    let top2 = g.op_n("TopK", &[&flat, &k], 2, topk_attrs());
    let nc_i = g.ints("nc", &[nc as i64]);
    let which = g.op("Div", &[&top2[1], &nc_i], vec![]);
    let class = g.op("Mod", &[&top2[1], &nc_i], vec![]);
    let idx = g.op("GatherElements", &[&top[1], &which], vec![Attr::Int("axis", 1)]); // [b, k]
    let idx = g.unsqueeze(&idx, &[2]);
    let rep4 = g.ints("repeats", &[1, 1, 4]);
    let idx4 = g.op("Tile", &[&idx, &rep4], vec![]);
    let sel = g.op("GatherElements", &[boxes, &idx4], vec![Attr::Int("axis", 1)]); // [b, k, 4]
    let score = g.unsqueeze(&top2[0], &[2]);
    let class = g.cast_to_float(&class);
    let class = g.unsqueeze(&class, &[2]);
    g.concat(&[&sel, &score, &class], 2)
}
