//! Starting a data-parallel run: how a process learns it was launched by `mpirun` or `srun`, and how
//! `ember train --device 0,1` relaunches itself under `mpirun`, as Ultralytics relaunches itself under
//! `torch.distributed.run`.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The number of processes the launcher started, when this process was started by one: OpenMPI's `mpirun`,
/// MPICH's `mpiexec` (Hydra's PMI) or Slurm's `srun`.
pub fn launched_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"]
        .iter()
        .find_map(|var| std::env::var(var).ok()?.trim().parse().ok())
}

/// What to do about a build without the `mpi` feature.
pub const NO_MPI_BUILT_IN: &str = "this ember was built without MPI: install OpenMPI (apt-get install openmpi-bin \
     libopenmpi-dev libclang-dev) and build with `cargo build --release --features mpi`";

/// The launcher program: `EMBER_MPIRUN` when set (a site's wrapper), else `mpirun` from the PATH.
fn launcher() -> String {
    std::env::var("EMBER_MPIRUN").unwrap_or_else(|_| "mpirun".into())
}

/// Runs this same command line again as `processes` processes under `mpirun` on this machine, and waits for
/// the job. Each process finds its device in `--device` by its local rank.
pub fn relaunch(processes: usize) -> Result<()> {
    if !cfg!(feature = "mpi") {
        bail!("training on {processes} devices runs {processes} processes under MPI, and {NO_MPI_BUILT_IN}");
    }
    let exe = std::env::current_exe().context("cannot find ember's own executable to relaunch")?;
    let launcher = launcher();
    let mut command = Command::new(&launcher);
    // Not bound to one core each (OpenMPI's default for a few processes): each rank runs its own loader threads.
    command.args(["-np", &processes.to_string(), "--bind-to", "none", "--oversubscribe"]);
    command.arg(exe).args(std::env::args_os().skip(1));
    tracing::info!("DDP: {}", describe(&command));
    let status = match command.status() {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "training on {processes} devices runs under `{launcher}`, which is not installed: apt-get install \
             openmpi-bin (or set EMBER_MPIRUN to your MPI's launcher)"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot start {launcher}")),
    };
    if !status.success() {
        bail!("the {processes}-process training job failed ({launcher} exited with {status}); its output above names the rank");
    }
    Ok(())
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
