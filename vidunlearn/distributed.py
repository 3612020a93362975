"""Data-parallel ``sample`` and ``eval`` on Hugging Face accelerate.

Started by ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1), each process takes every
``count``-th batch of prompts from its rank on; each prompt keeps its own seed and each batch is
the one a single process would run, so the clips and verdicts do not depend on the number of
processes (bit for bit at the same number of threads per process). The processes share nothing but the run folder
(:mod:`vidunlearn.runstore`); process 0 waits for the others, then writes the report. Started
plainly, there is one process and accelerate is not imported.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

# a rank that finishes early waits at the barrier for the slowest one: hours on a real model
BARRIER_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Processes:
    index: int = 0
    count: int = 1
    device: str = "cpu"       # the device this process samples on (cuda -> cuda:<local rank>)
    state: object = None      # accelerate's PartialState, when launched

    @property
    def main(self) -> bool:
        return self.index == 0

    def mine(self, indices: list[int], batch_size: int = 1) -> list[int]:
        """This process's share of ``indices``: cut into batches of ``batch_size`` as one process
        would batch them, every ``count``-th batch from its rank on. Each batch is then the one a
        single process runs: a batch's size changes the last bits of its clips (the arithmetic of
        a matrix product depends on its shape), so whole batches keep them bit for bit."""
        size = max(batch_size, 1)
        batches = [indices[i:i + size] for i in range(0, len(indices), size)]
        return [i for batch in batches[self.index::self.count] for i in batch]

    def wait(self) -> None:
        """Every process reaches this point before any goes on."""
        if self.count > 1:
            self.state.wait_for_everyone()


def launched() -> bool:
    """True under ``accelerate launch`` / ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def processes(device: str) -> Processes:
    """This process's place among those launched (gloo on CPU, NCCL on GPUs); one process
    with ``device`` when not launched. ``--device cuda`` (or cuda:N) becomes this process's own GPU."""
    if not launched():
        return Processes(device=device)
    from accelerate import PartialState

    state = PartialState(cpu=not device.startswith("cuda"), timeout=BARRIER_TIMEOUT)
    own = str(state.device) if device.startswith("cuda") else device  # each process its own GPU
    return Processes(state.process_index, state.num_processes, own, state)
