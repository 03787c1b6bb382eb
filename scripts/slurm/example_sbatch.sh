#!/usr/bin/env bash
# One distributed `gnnddm train` run as a SLURM batch job: every task is one torch.distributed rank
# (rank, world size and hosts come from SLURM_PROCID / SLURM_NTASKS / SLURM_JOB_NODELIST).
# Copy and edit the #SBATCH lines for your cluster; extra arguments are passed to `gnnddm train`:
#   sbatch scripts/slurm/example_sbatch.sh +experiment=synthetic_forecast partition.num_parts=8 ddm=asm
# Submit from the environment gnnddm is installed in (sbatch exports it to the job), or activate it below.
#SBATCH --job-name=gnnddm
#SBATCH --partition=debug
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#SBATCH --time=00:30:00
#SBATCH --output=slurm-%j.out
set -euo pipefail

# source /path/to/venv/bin/activate

# gnnddm finds the rendezvous itself: the first host of SLURM_JOB_NODELIST and a port derived from
# SLURM_JOB_ID (export MASTER_ADDR / MASTER_PORT here to choose them).

# One torch thread pool per task, sized to its CPUs, so that the ranks do not oversubscribe the node.
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"

# All tasks must agree on the output directory (Hydra's default is a timestamp, which may differ between
# tasks by a second), and use gloo (CPU) or nccl (GPU) for the collectives.
srun --kill-on-bad-exit=1 gnnddm train \
    distributed.backend=gloo \
    trainer.threads="${SLURM_CPUS_PER_TASK:-1}" \
    trainer.progress=false \
    hydra.run.dir="outputs/slurm-${SLURM_JOB_ID}" \
    "$@"
