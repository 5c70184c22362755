//! The MPI transport (rsmpi over the system's MPI library, OpenMPI or MPICH). MPI's default error handler
//! aborts the whole job when a rank fails, and the launcher ends the others: a dead rank never leaves the rest
//! waiting in a collective.

use anyhow::{Context, Result};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use super::Collective;

pub(super) struct MpiWorld {
    world: SimpleCommunicator,
    local_rank: usize,
    local_size: usize,
    /// Kept to the end: dropping it finalizes MPI.
    _universe: Universe,
}

impl MpiWorld {
    pub(super) fn init() -> Result<MpiWorld> {
        // Loader threads never call MPI; only the training thread does.
        let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)
            .context("MPI could not be initialised (was it initialised twice?)")?;
        // A panicking rank would otherwise finalize MPI on its way out while the others wait for it.
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            // SAFETY: MPI is initialised (the hook is set after it) and MPI_Abort does not return.
            unsafe { mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 101) };
        }));
        let world = universe.world();
        // The processes sharing this machine's memory, numbered: the local rank, whatever the launcher.
        let here = world.split_shared(world.rank());
        let (local_rank, local_size) = (here.rank() as usize, here.size() as usize);
        Ok(MpiWorld { world, local_rank, local_size, _universe: universe })
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn world_size(&self) -> usize {
        self.world.size() as usize
    }

    fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn local_size(&self) -> usize {
        self.local_size
    }

    fn all_reduce_sum(&self, values: &mut [f32]) {
        // rsmpi has no in-place all-reduce: the sum is received into `values` from a copy of it.
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, SystemOperation::sum());
    }

    fn broadcast(&self, values: &mut [f32]) {
        self.world.process_at_rank(0).broadcast_into(values);
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
        let mut len = bytes.len() as u64;
        self.world.process_at_rank(0).broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        self.world.process_at_rank(0).broadcast_into(&mut bytes[..]);
    }

    fn barrier(&self) {
        self.world.barrier();
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
