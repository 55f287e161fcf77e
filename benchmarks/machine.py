"""What a benchmark's figures were measured on: the CPU's model name and the BLAS settings."""

from __future__ import annotations

import os
import platform

__all__ = ["machine"]


def cpu_name() -> str:
    """The CPU's model name as lscpu shows it (Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """The fields every benchmark's JSON lines carry: the CPU, its cores, OpenBLAS's settings."""
    return {"cpu": cpu_name(), "cpus": os.cpu_count(),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
            "openblas_l2_size": os.environ.get("OPENBLAS_L2_SIZE")}
