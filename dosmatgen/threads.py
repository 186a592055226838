"""Thread limits for worker processes: several workers on few cores must not each run a pool
of numeric-library threads."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

#: Environment variables that size the thread pools of OpenMP, OpenBLAS, MKL, numexpr, Accelerate.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "GOTO_NUM_THREADS")


@contextmanager
def single_threaded_children() -> Iterator[None]:
    """Worker processes spawned inside this block get one thread in every numeric library.

    ``torch.set_num_threads(1)`` alone is not enough: a worker that inherits ``OMP_NUM_THREADS=2``
    keeps a second OpenMP thread that spins while the cores are saturated by the other workers.
    Measured on 2 busy cores: a SevenNet FIRE relaxation took 39 CPU-seconds with 2 OpenMP
    threads and 2.9 with 1. The parent's environment is restored on exit.
    """
    old = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: "1" for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
