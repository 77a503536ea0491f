"""Split work that releases the GIL (numpy sorts, Embree ray casts) over the task's threads.

The engine fixes a task's torch thread count from its node's `resources.num_cpus`; the same count bounds
the threads here, so a node asking for two CPUs uses two for these calls as well. Each chunk's result does
not depend on how the work was split, so the bytes are the same with one thread or many.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

# One pool per process, started on first use: starting threads per call cost ~1 ms, as much as a small sort.
_pool: ThreadPoolExecutor | None = None


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="graphflow-chunks")
    return _pool


def chunk_bounds(count: int, min_per_chunk: int) -> np.ndarray:
    """`[k + 1]` boundaries splitting `count` items into at most the task's thread count of chunks, none
    under `min_per_chunk` items (one chunk when there is too little work to share)."""
    chunks = max(1, min(torch.get_num_threads(), count // max(min_per_chunk, 1)))
    return np.linspace(0, count, chunks + 1).astype(np.int64)


def map_chunks(work: Callable[[int, int], T], bounds: np.ndarray) -> list[T]:
    """`[work(lo, hi) for each chunk]`, the chunks run at once on the shared pool (in the caller's thread
    when there is only one)."""
    spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    if len(spans) <= 1:
        return [work(lo, hi) for lo, hi in spans]
    return list(_shared_pool().map(lambda span: work(*span), spans))
