"""How many threads torch's batch work should use, chosen by measuring it.

On a machine whose cores are shared, two OpenMP threads can be far slower than one: an
OpenMP team waits at every barrier for its slowest thread, and a thread that shares its core
with another process is slow.  Measured on the 2-core development machine (bf16 autocast,
64 passages of 154 tokens, `bench/bench_embedding.py --busy`): with the cores free, 2 threads
58–63 passages/s and 1 thread 31–33; with one other CPU-bound process, 2 threads 9–23 and 1
thread 34.  No fixed count is right for both, and the load average says too late which case
it is, so ``ThreadChooser`` times the batches themselves: it runs on the count that measured
fastest, tries its neighbour on the ladder (n, n/2, …, 1) every ``EXPLORE_EVERY`` batches, and
moves when the neighbour is faster by more than ``MARGIN``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["EXPLORE_EVERY", "MARGIN", "ThreadChooser"]

# One batch in 16 runs on the neighbouring count: at worst (the neighbour 4× slower, as one
# thread against two on a free machine is 2×, two against one on a busy one 1.5–3.8×) that
# costs 1/16 × 3 ≈ 19 % of a run, typically 6 %.
EXPLORE_EVERY = 16
# The neighbour must be this much faster to be taken: batch timings vary by a few percent.
MARGIN = 1.1


class ThreadChooser:
    """Per-batch thread counts for ``set_threads`` from measured throughput (work units per second)."""

    def __init__(self, most: int, set_threads: Callable[[int], None], clock: Callable[[], float] = time.perf_counter) -> None:
        ladder = [max(1, most)]
        while ladder[-1] > 1:
            ladder.append(ladder[-1] // 2)
        self.ladder = ladder  # most threads first
        self._set = set_threads
        self._clock = clock
        self.current = 0  # index into the ladder
        self.rates: dict[int, float] = {}  # ladder index → last measured units per second
        self._batches = 0
        self._toward_fewer = True  # which neighbour the next exploration tries

    @property
    def threads(self) -> int:
        return self.ladder[self.current]

    def restore(self, threads: int) -> None:
        """Set ``threads`` again (after a run: other work in the process expects its own count)."""
        self._set(threads)

    def _next(self) -> int:
        """The ladder index the next batch runs on."""
        if len(self.ladder) == 1:
            return 0
        untried = [i for i in (self.current + 1, self.current - 1) if 0 <= i < len(self.ladder) and i not in self.rates]
        if self.current in self.rates and untried:
            return untried[0]  # the first measurements: each neighbour once
        if self._batches % EXPLORE_EVERY == EXPLORE_EVERY - 1:
            step = 1 if self._toward_fewer else -1
            self._toward_fewer = not self._toward_fewer
            for i in (self.current + step, self.current - step):
                if 0 <= i < len(self.ladder):
                    return i
        return self.current

    @contextmanager
    def batch(self, units: float) -> Iterator[int]:
        """Run one batch of ``units`` work (e.g. padded tokens) inside this; yields its thread count."""
        index = self._next()
        self._set(self.ladder[index])
        started = self._clock()
        yield self.ladder[index]
        seconds = max(self._clock() - started, 1e-9)
        self._batches += 1
        if self._batches == 1:
            return  # the first batch also warms the kernels up: its time says little
        self.rates[index] = units / seconds
        if index != self.current and self.rates[index] > MARGIN * self.rates.get(self.current, 0.0):
            self.current = index
