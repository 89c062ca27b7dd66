"""Helpers shared by the benchmark scripts (not part of the package).

Everything a benchmark needs comes from the repository itself: the sample photos in tests/data,
the class index shipped in the package, weights generated in the official layout, a corpus made
by make_corpus.py. Generated files are cached in bench-out/ (ignored by git).
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Measure this checkout's package whichever environment runs the script (a shared venv's editable
# install may point at another checkout): first on sys.path here and in every command started.
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
HERE = ROOT / "benchmarks"
OUT = ROOT / "bench-out"
PY = sys.executable
XCEPTION = str(Path(PY).with_name("xception"))  # the command this environment installed
SAMPLES = sorted((ROOT / "tests" / "data").glob("*.jpg"))
CLASS_INDEX = ROOT / "xception_cli" / "data" / "imagenet_class_index.json"
NAIVE = HERE / "naive_keras.py"
# The flags that decide which precisions run natively, in the order they are printed.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def cpu() -> tuple[str, frozenset[str]]:
    from xception_cli.system import cpu_info

    return cpu_info()


def has_bf16(flags: frozenset[str]) -> bool:
    """bfloat16 arithmetic in hardware (AVX512-BF16 or AMX); elsewhere it is emulated, slower than float32."""
    from xception_cli.system import has_native_bf16

    return has_native_bf16(flags)


def has_vnni(flags: frozenset[str]) -> bool:
    """INT8 dot products in hardware (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def machine() -> str:
    model, flags = cpu()
    marks = " ".join(f"{f}{'+' if f in flags else '-'}" for f in FLAGS)
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}; flags: {marks}"


def compile_bytecode() -> None:
    """The package's modules compiled to bytecode, as an installed package has them (pip compiles
    at install). A checkout run with PYTHONDONTWRITEBYTECODE=1 (set on some machines) would
    otherwise compile every edited module again in each timed command: ~0.1 s that no user pays."""
    import compileall

    compileall.compile_dir(str(ROOT / "xception_cli"), quiet=2)


def header(what: str) -> tuple[str, frozenset[str]]:
    """Print what is measured and on which CPU (model, cores, the flags that matter), first thing;
    the package's bytecode compiled (``compile_bytecode``)."""
    compile_bytecode()
    print(f"{what}\nmachine: {machine()}  (+ present, - absent)", flush=True)
    if hasattr(os, "getloadavg"):  # above the core count, other work shares the cores: expect noise
        print(f"load average (1 min) at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    return cpu()


def cache_env() -> dict[str, str]:
    """A fresh, empty compiled-network cache for this benchmark run (removed at exit): its first
    command starts cold, and nothing a user's own cache holds makes a figure better."""
    OUT.mkdir(exist_ok=True)
    folder = tempfile.mkdtemp(prefix="cache-", dir=OUT)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return {"XCEPTION_CACHE_DIR": folder}


def weights_file(given: str | os.PathLike | None = None) -> Path:
    """``given``, or the calibrated seeded weights every benchmark shares, in the official layout.

    Generated once from the sample photos in tests/data (xception_cli.synthetic.make_weights_file)
    into bench-out/weights.h5; never committed. The real ImageNet file, where you have it, is
    passed with --weights: speed does not depend on the values.
    """
    if given:
        return Path(given)
    path = OUT / "weights.h5"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        print(f"generating seeded weights in the official layout: {path} (once)", file=sys.stderr, flush=True)
        partial = path.with_suffix(".partial.h5")
        code = (
            "import sys\n"
            "from xception_cli.runtimes.tensorflow import import_tensorflow_quietly\n"
            "import_tensorflow_quietly()\n"
            "from xception_cli.synthetic import make_weights_file\n"
            "make_weights_file(sys.argv[1], sys.argv[2:])\n"
        )
        subprocess.run([PY, "-c", code, str(partial), *map(str, SAMPLES)], check=True)
        partial.replace(path)
    return path


def corpus(n: int, seed: int = 0, size: str = "4000x3000") -> Path:
    """``n`` photo-like JPEGs made by make_corpus.py (cached in bench-out/, remade if incomplete)."""
    d = OUT / f"corpus-{n}-{size}-seed{seed}"
    if not (d / "corpus.json").exists():
        print(f"making {n} JPEGs of {size} in {d} (once)", file=sys.stderr, flush=True)
        subprocess.run([PY, str(HERE / "make_corpus.py"), str(d), "--n", str(n), "--size", size,
                        "--seed", str(seed)], check=True)
    return d


def naive_cmd(target: Path, mode: str, weights: Path) -> list[str]:
    """The naive Keras script on ``target`` (a photo or a folder), ``loop`` or ``batch``."""
    return [PY, str(NAIVE), str(target), "--mode", mode, "--weights", str(weights), "--class-index", str(CLASS_INDEX)]


def timed(cmd: list[str], env: dict | None = None, stdout=subprocess.DEVNULL) -> dict:
    """Run ``cmd``; wall seconds, the child's own CPU seconds (user + system) and peak RSS (MB), via wait4."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""  # drained as it comes: no pipe stall
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(cmd)}\n{err[-2000:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stderr": err}


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def dump(obj) -> str:
    return json.dumps(obj, indent=2)
