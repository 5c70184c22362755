//! Block-level behaviour: BatchNorm statistics, gradient routing of the end-to-end head, decoding,
//! upsampling, and the f16 path through the single convolution.

use crate::common;

use burn::module::{AutodiffModule, Module};
use burn::tensor::{DType, Distribution, Tensor, TensorData};
use ember::backend::{Cpu, CpuAutodiff};
use ember::model::{make_anchors, BoxFormat, HeadOutput, Yolo};
use ember::nn::{upsample_nearest, BatchNorm2dConfig};

#[test]
fn batchnorm_updates_running_stats_like_pytorch() {
    let device = Default::default();
    let bn = BatchNorm2dConfig::new(1).init::<CpuAutodiff>(&device);
    // One channel, values 1..=4: mean 2.5, biased var 1.25, unbiased var 5/3.
    let x = Tensor::<CpuAutodiff, 4>::from_data(TensorData::new(vec![1f32, 2., 3., 4.], [1, 1, 2, 2]), &device);
    let y = common::values(bn.forward(x));
    let expected: Vec<f32> = [1f32, 2., 3., 4.].iter().map(|v| (v - 2.5) / (1.25f32 + 1e-3).sqrt()).collect();
    for (a, b) in y.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-5, "{y:?} vs {expected:?}");
    }
    let mean = common::values(bn.running_mean.value())[0];
    let var = common::values(bn.running_var.value())[0];
    assert!((mean - 0.03 * 2.5).abs() < 1e-6, "running mean {mean}");
    assert!((var - (0.97 + 0.03 * 5.0 / 3.0)).abs() < 1e-6, "running var {var}");
    // Inference (no autodiff) uses the running statistics.
    let bn = bn.valid();
    let x = Tensor::<Cpu, 4>::from_data(TensorData::new(vec![1f32], [1, 1, 1, 1]), &device);
    let y = common::values(bn.forward(x))[0];
    assert!((y - (1.0 - mean) / (var + 1e-3).sqrt()).abs() < 1e-5);
}

#[test]
fn one2one_branch_does_not_train_the_backbone() {
    let device = Default::default();
    let model = Yolo::<CpuAutodiff>::new("yolo26n", 2, &device).unwrap();
    let x = Tensor::<CpuAutodiff, 4>::random([1, 3, 64, 64], Distribution::Uniform(0.0, 1.0), &device);
    let out = model.forward(x.clone());
    assert_eq!(out.feature_sizes, vec![[8, 8], [4, 4], [2, 2]]);
    assert_eq!(out.strides, vec![8.0, 16.0, 32.0]);
    let o2o = out.one2one.expect("yolo26 is end-to-end");
    assert_eq!(o2o.boxes.dims(), [1, 4, 84]);
    assert_eq!(o2o.scores.dims(), [1, 2, 84]);

    let grads = o2o.scores.sum().backward();
    let first = match &model.model[0] {
        ember::model::Layer::Conv(c) => c.conv.weight.clone(),
        _ => unreachable!(),
    };
    assert!(first.grad(&grads).is_none(), "one2one loss must not reach the backbone");
    let det = match model.model.last().unwrap() {
        ember::model::Layer::Detect(d) => d,
        _ => unreachable!(),
    };
    let o2o_last = &det.one2one_cv3.as_ref().unwrap()[0].last().weight;
    assert!(o2o_last.grad(&grads).is_some());

    let out = model.forward(x.clone());
    let grads = out.one2many.boxes.sum().backward();
    assert!(first.grad(&grads).is_some(), "one2many loss trains the backbone");

    // The evaluation copy runs on the inner backend with running statistics.
    let eval = model.valid();
    let y = eval.predict(x.inner());
    assert_eq!(y.dims(), [1, 4 + 2, 84]);
    assert!(model.check_input([1, 3, 64, 64]).is_ok());
    assert!(model.check_input([1, 3, 64, 48]).is_err());
    assert!(model.check_input([1, 1, 64, 64]).is_err());
}

#[test]
fn decode_matches_hand_computation() {
    let device = Default::default();
    // One level of 1x2 cells at stride 8, reg_max 1: anchors (0.5, 0.5) and (1.5, 0.5).
    let boxes = Tensor::<Cpu, 1>::from_floats([1.0, 0.0, 0.5, 0.5, 2.0, 1.0, 0.5, 0.5], &device).reshape([1, 4, 2]);
    let scores = Tensor::<Cpu, 1>::from_floats([0.0, 100.0], &device).reshape([1, 1, 2]);
    let head = HeadOutput { boxes, scores };
    let xyxy = common::values(head.decode(&[[1, 2]], &[8.0], 1, BoxFormat::Xyxy));
    // anchor 0: x1 = 0.5-1, y1 = 0.5-0.5, x2 = 0.5+2, y2 = 0.5+0.5, times 8.
    assert_eq!(xyxy, vec![-4.0, 12.0, 0.0, 0.0, 20.0, 20.0, 8.0, 8.0, 0.5, 1.0]);
    let xywh = common::values(head.decode(&[[1, 2]], &[8.0], 1, BoxFormat::Xywh));
    assert_eq!(&xywh[..8], &[8.0, 16.0, 4.0, 4.0, 24.0, 8.0, 8.0, 8.0]);

    let (points, strides) = make_anchors(&[[2, 2], [1, 1]], &[8.0, 16.0], 0.5).to_tensors::<Cpu>(&device);
    assert_eq!(common::values(points), vec![0.5, 0.5, 1.5, 0.5, 0.5, 1.5, 1.5, 1.5, 0.5, 0.5]);
    assert_eq!(common::values(strides), vec![8.0, 8.0, 8.0, 8.0, 16.0]);

    // DFL: a one-hot distribution at bin 3 decodes to distance 3.
    let mut raw = vec![-1e4f32; 4 * 16];
    for side in 0..4 {
        raw[side * 16 + 3] = 0.0;
    }
    let boxes = Tensor::<Cpu, 1>::from_floats(raw.as_slice(), &device).reshape([1, 64, 1]);
    let d = common::values(ember::model::box_distances(boxes, 16));
    assert!(d.iter().all(|v| (v - 3.0).abs() < 1e-5), "{d:?}");
}

#[test]
fn upsample_is_nearest() {
    let device = Default::default();
    let x = Tensor::<Cpu, 1>::from_floats([1.0, 2.0, 3.0, 4.0], &device).reshape([1, 1, 2, 2]);
    let y = common::values(upsample_nearest(x, 2));
    assert_eq!(y, vec![1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]);
}

#[test]
fn f16_input_runs_through_the_model() {
    let device = Default::default();
    let model = Yolo::<Cpu>::new("yolov8n", 2, &device).unwrap();
    let x = Tensor::<Cpu, 4>::random([1, 3, 64, 64], Distribution::Uniform(0.0, 1.0), &device);
    let full = common::values(model.predict(x.clone()));
    let half = model.predict(x.cast(DType::F16));
    assert_eq!(half.dtype(), DType::F16);
    let half = common::values(half);
    let max = full.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = full.iter().zip(&half).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff / max < 2e-2, "f16 vs f32: {diff} of {max}");
    let _ = model.num_params();
}

#[test]
fn deep_clone_has_its_own_running_stats() {
    let device = Default::default();
    let model = Yolo::<CpuAutodiff>::new("yolo26n", 2, &device).unwrap();
    let shared = model.clone();
    let own = model.deep_clone().unwrap();
    let stats = |m: &Yolo<CpuAutodiff>| match &m.model[0] {
        ember::model::Layer::Conv(c) => common::values(c.bn.running_mean.value()),
        _ => unreachable!(),
    };
    let before = stats(&model);
    assert_eq!(stats(&own), before);
    let x = Tensor::<CpuAutodiff, 4>::random([1, 3, 64, 64], Distribution::Uniform(0.0, 1.0), &device);
    let _ = model.forward(x);
    assert_ne!(stats(&model), before, "training-mode forward updates the statistics");
    assert_eq!(stats(&shared), stats(&model), "clone() shares them (burn's RunningState)");
    assert_eq!(stats(&own), before, "deep_clone() does not");
}

#[test]
fn every_trainable_tensor_gets_a_gradient() {
    let device = Default::default();
    for name in ["yolo26n", "yolov8n"] {
        let mut model = Yolo::<CpuAutodiff>::new(name, 2, &device).unwrap();
        for round in 0..2 {
            let x = Tensor::<CpuAutodiff, 4>::random([1, 3, 64, 64], Distribution::Uniform(0.0, 1.0), &device);
            let out = model.forward(x);
            let mut loss = out.one2many.boxes.sum() + out.one2many.scores.sum();
            if let Some(o2o) = out.one2one {
                loss = loss + o2o.boxes.sum() + o2o.scores.sum();
            }
            let grads = ember::model::weights::named_grads(&model, &loss.backward());
            let tensors = ember::model::weights::named_tensors::<CpuAutodiff, _>(&model, false);
            let missing: Vec<_> =
                tensors.iter().filter(|t| t.trainable && !grads.contains_key(&t.key)).map(|t| &t.key).collect();
            assert!(missing.is_empty(), "{name} (round {round}): no gradient for {missing:?}");
            assert!(!grads.contains_key("model.22.dfl.conv.weight"), "the DFL projection is frozen");
            // After a save/load round trip the same must hold.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("w.safetensors");
            model.save_safetensors(&path).unwrap();
            model.load_safetensors(&path).unwrap();
        }
    }
}
