//! ember's training schedule against Ultralytics 8.4.190's own trainer: per batch, every parameter group's
//! lr, momentum and weight decay, the accumulation and whether an optimizer step is taken, plus the `lr/pg*`
//! columns of results.csv. Fixture: tools/reference/schedule_fixture.py.

use ember::config::{OptimizerChoice, OptimizerKind};
use ember::config::{Overrides, Settings};
use ember::train::optimizer::ParamGroup;
use ember::train::schedule::{results_lr_column_count, results_lr_columns, Schedule};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schedule/schedule.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The recipe's Ultralytics training arguments as ember settings.
fn settings_of(args: &Value) -> Settings {
    let values = args
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
        .collect();
    Settings::resolve(&Overrides { values }).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn schedule_reproduces_ultralytics_trainer() {
    let fixture = fixture();
    assert_eq!(fixture["ultralytics"], "8.4.190");
    let mut max_err = 0f64;
    let mut checked = 0usize;
    for recipe in fixture["recipes"].as_array().unwrap() {
        let name = recipe["name"].as_str().unwrap();
        let s = settings_of(&recipe["args"]);
        let train_images = recipe["train_images"].as_u64().unwrap() as usize;
        let schedule = Schedule::for_run(&s, train_images, recipe["nc"].as_u64().unwrap() as usize);
        assert_eq!(schedule.batches_per_epoch as u64, recipe["nb"].as_u64().unwrap(), "{name}: batches per epoch");
        assert_eq!(schedule.warmup as u64, recipe["nw"].as_u64().unwrap(), "{name}: warmup batches");
        let picked = match recipe["picked_optimizer"].as_str().unwrap() {
            "SGD" => OptimizerKind::Sgd,
            "AdamW" => OptimizerKind::AdamW,
            "MuSGD" => OptimizerKind::MuSGD,
            other => panic!("{name}: fixture optimizer {other}"),
        };
        assert_eq!(schedule.kind, picked, "{name}: optimizer");
        assert_eq!(schedule.lr0, f(&recipe["picked_lr0"]), "{name}: lr0");
        // args.yaml records the pick as 8.4.190 writes it back (optimizer, lr0, and a zero bias warmup for auto).
        let recorded = schedule.recorded_settings(&s);
        assert_eq!(recorded.optimizer, OptimizerChoice::Fixed(picked), "{name}: args.yaml optimizer");
        assert_eq!(recorded.lr0, f(&recipe["picked_lr0"]), "{name}: args.yaml lr0");
        let bias_lr = if s.optimizer == OptimizerChoice::Auto { 0.0 } else { s.warmup_bias_lr };
        assert_eq!(recorded.warmup_bias_lr, bias_lr, "{name}: args.yaml warmup_bias_lr");
        assert_eq!(recorded.momentum, s.momentum, "{name}: args.yaml momentum stays the setting's");

        let mut last_opt_step: i64 = -1;
        let mut last_groups = None;
        let mut epoch_lrs = Vec::new();
        for it in recipe["iterations"].as_array().unwrap() {
            let (epoch, ni) = (it["epoch"].as_u64().unwrap() as usize, it["ni"].as_u64().unwrap() as usize);
            // results.csv keeps the lr of each epoch's last batch.
            if let Some(groups) = last_groups.filter(|_| epoch_lrs.len() < epoch) {
                epoch_lrs.push(results_lr_columns(schedule.kind, &groups));
            }
            let plan = schedule.plan(ni, epoch);
            assert_eq!(plan.accumulate as u64, it["accumulate"].as_u64().unwrap(), "{name}: accumulate at batch {ni}");
            // The trainer's rule (src/train/trainer.rs): step once `accumulate` batches have been summed.
            let steps = ni as i64 - last_opt_step >= plan.accumulate as i64;
            assert_eq!(steps, it["stepped"].as_bool().unwrap(), "{name}: optimizer step at batch {ni}");
            if steps {
                last_opt_step = ni as i64;
            }
            // Ultralytics' groups by name (MuSGD splits each into the head's classification branches at 3x
            // lr0, "boosted", and the rest, and puts matrices and filters in "muon").
            for want in it["groups"].as_array().unwrap() {
                let group = want["name"].as_str().unwrap();
                let which = match group {
                    "weight" | "muon" => ParamGroup::Weight,
                    "bn" => ParamGroup::Norm,
                    "bias" => ParamGroup::Bias,
                    other => panic!("{name}: group {other}"),
                };
                let got = plan.groups[which as usize];
                let lr = if want["boosted"].as_bool().unwrap() { got.head_cls_lr } else { got.lr };
                for (what, g, w) in [
                    ("lr", lr, f(&want["lr"])),
                    ("momentum", got.momentum, f(&want["momentum"])),
                    ("weight_decay", got.weight_decay, f(&want["weight_decay"])),
                ] {
                    let err = (g - w).abs();
                    max_err = max_err.max(err);
                    assert!(err <= 1e-9, "{name}: {group} {what} at batch {ni} (epoch {epoch}): ember {g} vs {w}");
                    checked += 1;
                }
            }
            last_groups = Some(plan.groups);
        }
        epoch_lrs.push(results_lr_columns(schedule.kind, &last_groups.unwrap()));

        // Every `lr/pg*` column of results.csv (MuSGD's eight included), which keeps 6 significant digits (`%.6g`).
        let csv = recipe["results_lr"].as_array().unwrap();
        let columns = recipe["lr_columns"].as_array().unwrap().len();
        assert_eq!(results_lr_column_count(schedule.kind), columns, "{name}: lr/pg columns");
        assert_eq!(csv.len(), epoch_lrs.len(), "{name}: epochs in results.csv");
        for (e, (row, ours)) in csv.iter().zip(&epoch_lrs).enumerate() {
            let row: Vec<f64> = row.as_array().unwrap().iter().map(f).collect();
            assert_eq!(row.len(), ours.len(), "{name}: lr/pg columns");
            for (w, g) in row.iter().zip(ours) {
                let epoch = e + 1;
                let close = (w - g).abs() <= 5e-6 * w.abs().max(1e-12);
                assert!(close, "{name}: results.csv lr, epoch {epoch}: {row:?} vs {ours:?}");
            }
        }
    }
    println!("{checked} values checked, max abs error {max_err:e}");
    assert_eq!(checked, 846, "54 batches x 3 groups + 15 MuSGD batches x 8 groups, x (lr, momentum, weight decay)");
}

/// The args.yaml that Ultralytics 8.4.190 wrote for the first fixture run.
const ULTRALYTICS_ARGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schedule/args.yaml");

#[test]
fn ultralytics_args_yaml_works_as_cfg() {
    let overrides = Overrides { values: vec![("cfg".into(), ULTRALYTICS_ARGS.into())] };
    let s = Settings::resolve(&overrides).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!((s.epochs, s.batch, s.imgsz, s.nbs), (4, ember::config::BatchSize::Images(2), 64, 2));
    assert_eq!(s.optimizer.to_string(), "SGD");
    assert_eq!(s.warmup_epochs, 2.0);
    assert_eq!(s.model, "yolo26n.yaml");
    assert!(s.data.as_deref().unwrap().ends_with("data-sgd_warmup/data.yaml"));
    assert_eq!(s.nms, None, "nms: null means NMS, as val and export");
}
