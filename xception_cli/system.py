"""Facts about this machine that decide speed and precision (no TensorFlow, no OpenVINO here)."""

from __future__ import annotations

import os
import platform
import resource
import sys
from functools import lru_cache
from pathlib import Path

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU features with native bfloat16 arithmetic


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags (from /proc/cpuinfo where there is one)."""
    model, flags = platform.processor() or "unknown", frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def has_native_bf16(flags=None) -> bool:
    """Whether the CPU computes in bfloat16 natively (AMX or AVX512-BF16); elsewhere it is emulated."""
    flags = cpu_info()[1] if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


def cpu_record() -> dict:
    """The CPU part of every benchmark record: model, cores and the flags that matter here."""
    model, flags = cpu_info()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "avx_vnni": "avx_vnni" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
