//! The cost of summing a step's gradients over the processes of a data-parallel run: the flat FP32 gradient
//! buffer of yolo26n/s/m (80 classes) read from the device, all-reduced over MPI and written back, as the trainer
//! does once per optimizer step. Started plainly, it relaunches itself under `mpirun -np 2`.
//!
//!     cargo bench --features mpi --bench allreduce -- [--processes 2] [--reps 20]
//!
//! On the CPU backend the read and write are copies in memory; on a GPU they are PCIe transfers (BENCHMARKS.md
//! gives the arithmetic).

use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use ember::backend::{Cpu, CpuAutodiff};
use ember::dist::launch::launched_world_size;
use ember::dist::Group;
use ember::model::Yolo;
use ember::train::flat::FlatLayout;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    if launched_world_size().is_none() {
        let exe = std::env::current_exe()?;
        let processes = arg("--processes", 2).to_string();
        let status = std::process::Command::new("mpirun")
            .args(["-np", &processes, "--oversubscribe", "--bind-to", "none"])
            .arg(exe)
            .args(std::env::args().skip(1))
            .status()?;
        anyhow::ensure!(status.success(), "mpirun failed: {status}");
        return Ok(());
    }
    let group = Group::from_launcher()?;
    let reps = arg("--reps", 20);
    let device = Default::default();
    for model in ["yolo26n", "yolo26s", "yolo26m"] {
        let yolo = Yolo::<CpuAutodiff>::new(model, 80, &device)?;
        let len = FlatLayout::trainable(&yolo).len;
        let grads = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![1e-3f32; len], [len]), &device);
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps + 2 {
            group.barrier();
            let started = Instant::now();
            let summed = group.all_reduce(grads.clone());
            let _ = summed.into_data(); // wait for the write back
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let mut measured = times.split_off(2);
        measured.sort_by(f64::total_cmp);
        if group.is_main() {
            let mb = len as f64 * 4.0 / 1e6;
            let median = measured[measured.len() / 2];
            println!(
                "{model}: {len} gradients ({mb:.1} MB), {} processes: read + all-reduce + write {median:.2} ms median \
                 ({:.2}-{:.2} ms over {reps})",
                group.world_size(),
                measured[0],
                measured[measured.len() - 1]
            );
        }
    }
    Ok(())
}
