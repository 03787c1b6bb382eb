"""Rank and world from torchrun / SLURM variables, and the rank-to-subdomain assignment."""

from __future__ import annotations

import pytest

from gnnddm.distributed import assign_parts, first_host, world_from_env
from gnnddm.errors import ConfigError


def test_torchrun_variables():
    w = world_from_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1",
                        "MASTER_PORT": "1234"})
    assert (w.rank, w.world_size, w.local_rank, w.master_addr, w.master_port, w.source) == (
        1, 4, 1, "n1", 1234, "torchrun")


def test_slurm_variables_give_rank_size_and_master_from_the_nodelist():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1",
           "SLURM_JOB_NODELIST": "gpu[07-08,11],cpu1", "SLURM_JOB_ID": "4242"}
    w = world_from_env(env)
    assert (w.rank, w.world_size, w.local_rank, w.source) == (3, 4, 1, "slurm")
    assert w.master_addr == "gpu07"
    assert w.master_port == 15000 + 4242 % 20000
    # every task of the job derives the same rendezvous address
    assert world_from_env({**env, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}).master_port == w.master_port


def test_torchrun_wins_over_slurm():
    env = {"RANK": "0", "WORLD_SIZE": "2", "SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0",
           "SLURM_JOB_NODELIST": "a"}
    assert world_from_env(env).source == "torchrun"


def test_half_set_slurm_variables_are_an_error_naming_the_missing_ones():
    with pytest.raises(ConfigError, match="SLURM_NTASKS"):
        world_from_env({"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "a"})


def test_allocation_without_task_step_is_a_single_process():
    assert world_from_env({"SLURM_JOB_NODELIST": "a[1-2]"}).source == "single"
    assert world_from_env({}).world_size == 1


@pytest.mark.parametrize("nodelist,host", [("node1", "node1"), ("n[3-5]", "n3"), ("x[09,2]", "x09"),
                                           ("a,b", "a")])
def test_first_host(nodelist, host):
    assert first_host(nodelist) == host


def test_assign_parts_is_contiguous_balanced_and_covers_every_part():
    blocks = assign_parts(8, 3)
    assert [len(b) for b in blocks] in ([3, 2, 3], [3, 3, 2], [2, 3, 3])
    assert sorted(k for b in blocks for k in b) == list(range(8))
    assert assign_parts(2, 2) == [(0,), (1,)]


def test_more_ranks_than_subdomains_is_an_error():
    with pytest.raises(ConfigError, match="num_parts"):
        assign_parts(2, 4)
