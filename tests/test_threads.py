"""ThreadChooser: the thread count per batch follows what measures fastest, on a clock the test drives."""

from __future__ import annotations

from sme_qa.threads import EXPLORE_EVERY, ThreadChooser


class Machine:
    """Batches take ``units / speed[threads]`` seconds; ``speed`` changes when the machine gets busy."""

    def __init__(self, speed: dict[int, float]) -> None:
        self.speed = speed
        self.now = 0.0
        self.threads = 0
        self.history: list[int] = []

    def set_threads(self, n: int) -> None:
        self.threads = n

    def clock(self) -> float:
        return self.now

    def run(self, chooser: ThreadChooser, batches: int, units: float = 1000.0) -> list[int]:
        used = []
        for _ in range(batches):
            with chooser.batch(units) as n:
                assert n == self.threads
                self.now += units / self.speed[self.threads]
            used.append(n)
        self.history += used
        return used


FREE = {2: 60.0, 1: 32.0}  # passages/s measured on the 2 free cores (bench_embedding.py)
BUSY = {2: 9.0, 1: 34.0}  # ... with one other CPU-bound process


def test_free_cores_keep_both_threads_and_check_one_now_and_then():
    machine = Machine(FREE)
    chooser = ThreadChooser(2, machine.set_threads, machine.clock)
    assert chooser.ladder == [2, 1]
    used = machine.run(chooser, 64)
    assert chooser.threads == 2 and used.count(1) <= 64 // EXPLORE_EVERY + 1
    assert 1 in used  # it did measure the other count


def test_a_busy_machine_moves_to_one_thread_and_back_when_it_is_free_again():
    machine = Machine(FREE)
    chooser = ThreadChooser(2, machine.set_threads, machine.clock)
    machine.run(chooser, 20)
    machine.speed = BUSY
    used = machine.run(chooser, 2 * EXPLORE_EVERY)
    assert chooser.threads == 1 and used[-EXPLORE_EVERY:].count(1) >= EXPLORE_EVERY - 1
    # two threads measured slow while busy stays an old measurement only until it is tried again
    machine.speed = FREE
    used = machine.run(chooser, 3 * EXPLORE_EVERY)
    assert chooser.threads == 2 and used[-EXPLORE_EVERY:].count(2) >= EXPLORE_EVERY - 1


def test_a_difference_within_the_margin_does_not_flip_the_count():
    machine = Machine({2: 50.0, 1: 48.0})
    chooser = ThreadChooser(2, machine.set_threads, machine.clock)
    used = machine.run(chooser, 64)
    assert chooser.threads == 2 and used.count(2) >= 64 - 64 // EXPLORE_EVERY - 2


def test_one_thread_has_nothing_to_choose_and_the_ladder_halves():
    machine = Machine({1: 10.0})
    chooser = ThreadChooser(1, machine.set_threads, machine.clock)
    assert machine.run(chooser, 20) == [1] * 20
    assert ThreadChooser(8, machine.set_threads, machine.clock).ladder == [8, 4, 2, 1]
