"""NumPy's OpenBLAS, told before it loads to let its idle threads sleep at once.

OpenBLAS starts a thread per core when NumPy is imported, and each one spins, waiting for work,
for 2**28 cycles (about 0.1 s of a core) before it sleeps. The commands give it almost none (the
network runs in OpenVINO, its own threads), so that spin is a core taken from decoding while the
network loads: about 0.1 CPU-s per thread and command (``benchmarks/startup.py`` measures it).
``OPENBLAS_THREAD_TIMEOUT=4`` makes it 2**4 cycles; the threads stay, so BLAS work (``similar``
on a large library, ``train``) still gets every core. A value the user set is kept.
The CLI package imports this before anything that imports NumPy (a process that imports the CLI
package, and the processes it starts, get it too); ``import xception_cli`` alone leaves it unset.
"""

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
