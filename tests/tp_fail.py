"""Run under mpiexec by tests/test_tensor_parallel_mpi.py: tp-generate on tiny-llama with one rank made to fail —
``shard``: while splitting the weights, ``step``: at a decoding step — to check that the job ends (MPI Abort)
instead of the other ranks waiting forever in a collective.

    mpiexec -n N python tests/tp_fail.py {shard,step} FAILING_RANK
"""

import sys

from mpi4py import MPI

from transformer_np.cli import tp_generate
from transformer_np.cli.main import main

where, failing = sys.argv[1], int(sys.argv[2])
rank = MPI.COMM_WORLD.Get_rank()
if where == "shard" and rank == failing:
    def shard(*args):
        raise ValueError("a shard this rank could not build")

    tp_generate.shard = shard
elif where == "step" and rank == failing:
    real = tp_generate.shard

    def shard(*args):
        local = real(*args)
        calls = [0]
        step = local.step

        def failing_step(*a, **k):
            calls[0] += 1
            if calls[0] == 3:
                raise ValueError("a decoding step that failed on this rank")
            return step(*a, **k)

        local.step = failing_step
        return local

    tp_generate.shard = shard
sys.exit(main(["tp-generate", "--model", "tiny-llama", "--prompt", "5 6 7", "--max-new-tokens", "6"]))
