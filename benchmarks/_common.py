"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "bench-out"
PY = sys.executable
XCEPTION = str(Path(PY).with_name("xception"))  # the command this environment installed


def machine() -> str:
    from xception_cli.system import cpu_info

    model, flags = cpu_info()
    extras = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
              if f in flags]
    return f"{model}, {os.cpu_count()} cores, {platform.python_version()}, flags: {' '.join(extras) or 'none'}"


def weights_file() -> Path:
    """The calibrated seeded weights file every benchmark uses (generated once, never committed)."""
    path = OUT / "weights.h5"
    if not path.exists():
        code = (
            "import glob, sys\n"
            "from xception_cli.runtimes.tensorflow import import_tensorflow_quietly\n"
            "import_tensorflow_quietly()\n"
            "from xception_cli.synthetic import make_weights_file\n"
            f"make_weights_file({str(path)!r}, sorted(glob.glob({str(SHARED / 'samples' / '*.jpg')!r})))\n"
        )
        subprocess.run([PY, "-c", code], check=True)
    return path


def corpus(n: int) -> Path:
    """``n`` 12-megapixel JPEGs made by ../shared/bench/make_corpus.py (cached in bench-out/)."""
    d = OUT / f"corpus-{n}"
    if len(list(d.glob("*.jpg"))) != n:
        subprocess.run([PY, str(SHARED / "bench" / "make_corpus.py"), str(d), str(n)], check=True)
    return d


def timed(cmd: list[str], env: dict | None = None, stdout=subprocess.DEVNULL) -> dict:
    """Run ``cmd``; wall seconds and the child's own peak RSS (MB), via wait4."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(cmd)}\n{err[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stderr": err}


def dump(obj) -> str:
    return json.dumps(obj, indent=2)
