"""The torch device a command runs on, and the peak memory of a piece of work (benchmarks, the
batched relaxer's batch sizing). torch is imported by the functions, not by this module."""

from __future__ import annotations

import re
import resource
from pathlib import Path
from typing import Any

from dosmatgen.errors import ConfigError


def resolve_device(name: str) -> Any:
    """"auto" -> CUDA when available, else CPU; an unavailable CUDA request is a ConfigError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return dev


def synchronize(device: Any) -> None:
    """Wait for the device's queued kernels (CUDA), so that a wall-clock interval covers them."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Context manager measuring peak memory (MiB) of the enclosed code: on CUDA
    ``torch.cuda.max_memory_allocated``; on CPU the peak resident set size (``VmHWM``, reset through
    ``/proc/self/clear_refs``; where that is unavailable, ``ru_maxrss``, the process-wide peak)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.peak_mib: float = float("nan")
        self.before_mib: float = float("nan")
        self.method = ""

    def __enter__(self) -> "PeakMemory":
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before_mib = torch.cuda.memory_allocated(self.device) / 2 ** 20
            self.method = "torch.cuda.max_memory_allocated"
            return self
        self.before_mib = _proc_status_kib("VmRSS") / 1024
        self.method = "VmHWM (peak RSS, reset)" if _reset_hwm() else "ru_maxrss (process peak RSS)"
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        elif self.method.startswith("VmHWM"):
            self.peak_mib = _proc_status_kib("VmHWM") / 1024
        else:
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status_kib("VmHWM") > 0
    except OSError:
        return False


def _proc_status_kib(key: str) -> float:
    try:
        m = re.search(rf"{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
    except OSError:
        return float("nan")
    return float(m.group(1)) if m else float("nan")
