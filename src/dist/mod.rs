//! Data-parallel training across processes: the collective operations a trainer needs (all-reduce of one flat
//! FP32 buffer, broadcast, barrier) behind one [`Group`], over MPI when the `mpi` feature is built in and the
//! process was started by a launcher (`mpirun`, `srun`), and a group of one otherwise.
//!
//! Every rank holds a full copy of the model; each computes gradients on its share of the batch, the
//! gradients are summed across ranks (one read from the device, one MPI all-reduce, one write back), and every
//! rank applies the same update. The sum goes through the host because MPI moves host memory on every backend;
//! a GPU-resident all-reduce (NCCL on CUDA, its unique id broadcast over MPI) would be another branch of
//! [`Group::all_reduce`], with nothing in the trainer changing.

pub mod launch;
#[cfg(feature = "mpi")]
mod mpi;

use anyhow::Result;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::readback::{read_f32, Purpose};

/// The collective operations over host memory that a transport provides.
pub trait Collective {
    /// This process's place among all of them, 0-based; rank 0 writes the run's files.
    fn rank(&self) -> usize;
    /// How many processes train together (1 without a launcher).
    fn world_size(&self) -> usize;
    /// This process's place among those on the same machine, which picks its device.
    fn local_rank(&self) -> usize;
    /// How many of the processes run on this machine (they share its cores).
    fn local_size(&self) -> usize;
    /// Sums `values` element-wise over every rank, in place on each.
    fn all_reduce_sum(&self, values: &mut [f32]);
    /// Replaces `values` on every rank by rank 0's (same length on every rank).
    fn broadcast(&self, values: &mut [f32]);
    /// Replaces `bytes` on every rank by rank 0's, whatever their length elsewhere.
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>);
    /// Waits until every rank is here.
    fn barrier(&self);
    /// Ends every process of the job with `code` (the launcher reports which rank called it).
    fn abort(&self, code: i32) -> !;
}

/// The processes training one model together.
pub struct Group {
    transport: Box<dyn Collective>,
}

impl Group {
    /// A group of this process alone: every operation is the identity.
    pub fn single() -> Group {
        Group { transport: Box::new(Single) }
    }

    /// The group this process was launched into: MPI's world under a launcher (with the `mpi` feature), a group
    /// of one otherwise. A launcher's world of several processes without MPI built in is an error, not a run that
    /// would train the same model N times.
    pub fn from_launcher() -> Result<Group> {
        let launched = launch::launched_world_size();
        #[cfg(feature = "mpi")]
        if launched.is_some() {
            return Ok(Group { transport: Box::new(mpi::MpiWorld::init()?) });
        }
        if let Some(n) = launched.filter(|&n| n > 1) {
            anyhow::bail!("started by an MPI launcher with {n} processes, but {}", launch::NO_MPI_BUILT_IN);
        }
        Ok(Group::single())
    }

    /// This process's place in the group, 0-based; rank 0 writes the run's files.
    pub fn rank(&self) -> usize {
        self.transport.rank()
    }

    /// How many processes train together; 1 for a group of one.
    pub fn world_size(&self) -> usize {
        self.transport.world_size()
    }

    /// This process's place among the group's processes on the same machine, which picks its device
    /// ([`Devices::for_local_rank`](crate::config::Devices::for_local_rank)).
    pub fn local_rank(&self) -> usize {
        self.transport.local_rank()
    }

    /// How many of the group's processes run on this machine, sharing its cores (1 for a group of one).
    pub fn local_size(&self) -> usize {
        self.transport.local_size()
    }

    /// Rank 0, which writes files and prints the run's progress.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Whether more than one process trains (else every collective is skipped).
    pub fn is_distributed(&self) -> bool {
        self.world_size() > 1
    }

    /// `flat` summed over every rank: one read from the device, one all-reduce, one write back. A group of one
    /// returns it untouched (no read).
    pub fn all_reduce<B: Backend>(&self, flat: Tensor<B, 1>) -> Tensor<B, 1> {
        self.through_host(flat, |t, values| t.all_reduce_sum(values))
    }

    /// Rank 0's `flat` on every rank (one read and one write on each, none in a group of one).
    pub fn broadcast<B: Backend>(&self, flat: Tensor<B, 1>) -> Tensor<B, 1> {
        self.through_host(flat, |t, values| t.broadcast(values))
    }

    /// `flat` read to the host, passed through `collective`, and written back to its device.
    fn through_host<B: Backend>(
        &self,
        flat: Tensor<B, 1>,
        collective: impl FnOnce(&dyn Collective, &mut [f32]),
    ) -> Tensor<B, 1> {
        if !self.is_distributed() {
            return flat;
        }
        let device = flat.device();
        let mut values = read_f32(flat, Purpose::Other);
        collective(self.transport.as_ref(), &mut values);
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [n]), &device)
    }

    /// Rank 0's value of `value` on every rank (decisions: stop, repeat the epoch, the precision).
    pub fn broadcast_value<T: serde::Serialize + serde::de::DeserializeOwned>(&self, value: T) -> Result<T> {
        if !self.is_distributed() {
            return Ok(value);
        }
        let mut bytes = if self.is_main() { serde_json::to_vec(&value)? } else { Vec::new() };
        self.transport.broadcast_bytes(&mut bytes);
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Waits until every rank is here; returns at once in a group of one.
    pub fn barrier(&self) {
        if self.is_distributed() {
            self.transport.barrier();
        }
    }

    /// Ends the whole job: a rank that fails must not leave the others waiting in a collective.
    pub fn abort(&self, code: i32) -> ! {
        self.transport.abort(code)
    }
}

/// A world of one process.
struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn local_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _: &mut [f32]) {}
    fn broadcast(&self, _: &mut [f32]) {}
    fn broadcast_bytes(&self, _: &mut Vec<u8>) {}
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
