//! Data-parallel training under `mpirun` (the `mpi` feature, OpenMPI installed): two ranks reach the weights one
//! process reaches by accumulating the same micro-batches, a two-rank run learns and leaves one run folder, a
//! killed rank ends the job and the run resumes, `--device cpu,cpu` relaunches itself under mpirun.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ember::data::synthetic::{generate, SyntheticConfig};
use ember::model::StateDict;

fn shapes(dir: &Path, train: usize, val: usize) -> PathBuf {
    generate(dir, &SyntheticConfig { train_images: train, val_images: val, size: 64, ..Default::default() }).unwrap()
}

/// `mpirun -np N` over the ember binary, allowed as root and on more processes than cores (CI's 2-core machine).
fn mpirun(processes: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", &processes.to_string(), "--oversubscribe", "--bind-to", "none"]);
    cmd.arg(env!("CARGO_BIN_EXE_ember"));
    allow_root(&mut cmd);
    cmd
}

fn allow_root(cmd: &mut Command) {
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
}

fn ember() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ember"))
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    text
}

/// `key=value` words of a run on generated shapes.
fn words(pairs: &[(&str, String)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The trainable parameters of a checkpoint's raw model (BatchNorm statistics left out: as in 8.4.190's DDP,
/// each rank keeps its own).
fn trained_parameters(path: &Path) -> Vec<(String, Vec<f32>)> {
    let sd = StateDict::read(path).unwrap();
    let mut out: Vec<_> = sd
        .tensors
        .into_iter()
        .filter(|(k, _)| k.starts_with("train.model.") && !k.contains("running_") && !k.contains("num_batches"))
        .map(|(k, (_, v))| (k, v))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no trained parameters in {}", path.display());
    out
}

fn run_folders(project: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(project).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The definition of data parallelism: 2 ranks x 1 image reach, step after step, the weights of one process that
/// accumulates the same two images per step (nbs=2, so the recipe is the same). Every rank deals the same epoch
/// order (rank r takes samples r, r+2, ...), and augmentation is seeded per sample, so the micro-batches match.
#[test]
fn two_ranks_equal_one_process_accumulating_their_batches() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = shapes(&dir.path().join("data"), 8, 2);
    let project = dir.path().join("runs");
    let common = |name: &str, batch: usize| {
        words(&[
            ("data", yaml.display().to_string()),
            ("model", "yolo26n".into()),
            ("imgsz", "64".into()),
            ("batch", batch.to_string()),
            ("nbs", "2".into()),
            ("epochs", "2".into()),
            ("optimizer", "SGD".into()),
            ("lr0", "0.01".into()),
            ("warmup_epochs", "0".into()),
            ("mosaic", "0".into()),
            ("val", "false".into()),
            ("plots", "false".into()),
            ("workers", "1".into()),
            ("project", project.display().to_string()),
            ("name", name.into()),
        ])
    };
    // One thread per process: the same kernels in the same order, so the sums differ only where the ranks' are
    // added in another order.
    let ddp = run_ok(mpirun(2).arg("train").args(common("ddp", 2)).env("RAYON_NUM_THREADS", "1"));
    assert!(ddp.contains("DDP: 2 processes, 1 images each a batch, 2 in all"), "{ddp}");
    run_ok(ember().arg("train").args(common("single", 1)).env("RAYON_NUM_THREADS", "1"));
    assert_eq!(run_folders(&project), ["ddp", "single"], "one run folder per run");

    let a = trained_parameters(&project.join("ddp/weights/last.safetensors"));
    let b = trained_parameters(&project.join("single/weights/last.safetensors"));
    assert_eq!(a.len(), b.len());
    let (mut worst, mut moved) = (0f32, 0f32);
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        assert_eq!(name, other);
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        worst = worst.max(diff / scale);
        moved = moved.max(diff);
    }
    println!("2 ranks vs 1 process accumulating: largest difference {worst:e} of a tensor's largest value");
    assert!(worst <= 1e-5, "ranks and accumulation differ by {worst:e} (relative)");

    // And training moved the weights at all: the initial model differs from both.
    let mut untrained: Vec<String> =
        common("zero", 1).into_iter().filter(|w| !w.starts_with("epochs=") && !w.starts_with("lr0=")).collect();
    untrained.extend(["epochs=1", "lr0=0", "momentum=0"].map(String::from));
    let initial = run_ok(ember().arg("train").args(untrained));
    assert!(initial.contains("Results saved"), "{initial}");
    let zero = trained_parameters(&project.join("zero/weights/last.safetensors"));
    let changed = zero.iter().zip(&a).any(|((_, z), (_, x))| z.iter().zip(x).any(|(p, q)| (p - q).abs() > 1e-4));
    assert!(changed, "8 optimizer steps left the weights where they started");
}

/// A two-rank run on generated shapes learns (the single-process test reaches mAP50 >= 0.8 with the same recipe)
/// and rank 0 alone writes the run's files.
#[test]
fn two_rank_run_learns_with_one_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = shapes(&dir.path().join("data"), 64, 32);
    let project = dir.path().join("runs");
    let mut pairs = crate::common::recipe(&yaml, &project, "learn", 25);
    pairs.push(("val", "false".into()));
    let out = run_ok(mpirun(2).arg("train").args(words(&pairs)).env("EMBER_LOG", "info,ember=debug"));
    assert_eq!(out.matches("Results saved to").count(), 1, "rank 0 alone reports: {out}");
    // Each rank's loader takes its share of the machine's cores, as 8.4.190's `cpu_count / devices`.
    let cpus = std::thread::available_parallelism().unwrap().get();
    let workers = (cpus / 2).clamp(1, 2); // the recipe asks for 2
    let line = format!("loader workers a process: {workers} (2 training processes on this machine)");
    assert_eq!(out.matches(&line).count(), 2, "each rank splits the cores: {out}");
    assert_eq!(run_folders(&project), ["learn"]);
    let csv = std::fs::read_to_string(project.join("learn/results.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').map(str::trim).collect();
    let column = header.iter().position(|h| *h == "metrics/mAP50(B)").unwrap();
    let last: Vec<&str> = csv.lines().last().unwrap().split(',').map(str::trim).collect();
    let map50: f64 = last[column].parse().unwrap();
    println!("2 ranks x 4 images, 25 epochs: mAP50 {map50:.3}");
    assert!(map50 >= 0.7, "mAP50 {map50:.3} after 25 epochs on 2 ranks\n{csv}");
    assert_eq!(csv.lines().count(), 26, "header and 25 epochs, written once");
}

/// The pid of rank `rank` of the job whose command line mentions `marker`.
fn rank_pid(rank: usize, marker: &str) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}\0");
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let environ = std::fs::read(e.path().join("environ")).ok()?;
        let mentions = String::from_utf8_lossy(&cmdline).contains(marker);
        let is_rank = String::from_utf8_lossy(&environ).contains(&wanted);
        (mentions && is_rank && !String::from_utf8_lossy(&cmdline).starts_with("mpirun")).then_some(pid)
    })
}

/// SIGKILL to rank 1 mid-run ends the whole job within seconds with a message naming the rank; the run resumes
/// from rank 0's last checkpoint in one process, and `--device cpu,cpu` relaunches it under mpirun.
#[test]
fn killed_rank_ends_the_job_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = shapes(&dir.path().join("data"), 48, 8);
    let project = dir.path().join("runs");
    let pairs = crate::common::recipe(&yaml, &project, "killed", 3);
    let mut job =
        mpirun(2).arg("train").args(words(&pairs)).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let last = project.join("killed/weights/last.safetensors");
    let start = Instant::now();
    while !last.exists() {
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint after 5 minutes");
        assert!(job.try_wait().unwrap().is_none(), "training ended before a rank could be killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300)); // into the second epoch
    let marker = project.display().to_string();
    let pid = rank_pid(1, &marker).expect("rank 1's process");
    Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    let killed = Instant::now();
    while job.try_wait().unwrap().is_none() {
        assert!(killed.elapsed() < Duration::from_secs(30), "the job still runs 30 s after rank 1 died");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = job.wait_with_output().unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("rank 1"), "the launcher names the dead rank: {said}");
    println!("job ended {:.1} s after rank 1 was killed", killed.elapsed().as_secs_f64());

    // Resumed with another world size: one process.
    let resumed = run_ok(ember().args(["train", "--resume"]).arg(&last));
    assert!(resumed.contains("Resuming training from"), "{resumed}");
    let csv = std::fs::read_to_string(project.join("killed/results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header and 3 epochs: {csv}");

    // `--device cpu,cpu` relaunches under mpirun (one process per listed device).
    let mut relaunch = ember();
    allow_root(&mut relaunch);
    let mut short = crate::common::recipe(&yaml, &project, "relaunched", 1);
    short.push(("device", "cpu,cpu".into()));
    let out = run_ok(relaunch.arg("train").args(words(&short)));
    assert!(out.contains("DDP: 2 processes"), "{out}");
    assert_eq!(run_folders(&project), ["killed", "relaunched"]);
}

/// Launches that cannot work are refused with what to do.
#[test]
fn bad_launches_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = shapes(&dir.path().join("data"), 4, 2);
    let project = dir.path().join("runs");
    let mut pairs = crate::common::recipe(&yaml, &project, "tiny", 1);
    pairs.retain(|(k, _)| *k != "batch");
    pairs.push(("batch", "1".into()));
    let out = mpirun(2).arg("train").args(words(&pairs)).output().unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("batch=1 is smaller than the 2 training processes"), "{said}");

    // More processes on this machine than devices listed.
    let mut pairs = crate::common::recipe(&yaml, &project, "three", 1);
    pairs.push(("device", "cpu,cpu".into()));
    let out = mpirun(3).arg("train").args(words(&pairs)).output().unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("process 2 on this machine has no device"), "{said}");
}
