"""Peak memory of one step of work: resident memory (Linux VmHWM, reset at the start through
/proc/self/clear_refs) and, on CUDA, torch's peak allocation. Elsewhere the process's lifetime
peak (``ru_maxrss``) is reported and marked as such."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _vm_hwm_mib() -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass
class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.rss_mib``, ``peak.gpu_mib``."""

    device: str = "cpu"
    rss_mib: float = 0.0
    gpu_mib: float | None = None
    since_start: bool = field(default=False)  # True: rss is the process's lifetime peak, not this step's

    def __enter__(self) -> "PeakMemory":
        try:
            _CLEAR_REFS.write_text("5")  # "5": reset the peak RSS (VmHWM) to the current RSS
        except OSError:
            self.since_start = True
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = None if self.since_start else _vm_hwm_mib()
        if hwm is None:
            self.since_start = True
            scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / (1 << 20)
        self.rss_mib = hwm
        if self.device.startswith("cuda"):
            import torch

            self.gpu_mib = torch.cuda.max_memory_allocated(self.device) / (1 << 20)

    def describe(self) -> str:
        text = f"peak RSS {self.rss_mib:.0f} MiB" + (" (process lifetime)" if self.since_start else "")
        return text + (f", peak GPU {self.gpu_mib:.0f} MiB" if self.gpu_mib is not None else "")
