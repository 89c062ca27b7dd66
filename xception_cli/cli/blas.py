"""NumPy's OpenBLAS, told before it loads to let its idle threads sleep at once.

OpenBLAS starts a thread per core when NumPy is imported, and each one spins, waiting for work,
for 2**28 cycles (about 0.1 s of a core) before it sleeps. The commands give it almost none (the
network runs in OpenVINO, its own threads), so that spin is a core taken from decoding while the
network loads: about 0.1 CPU-s per command, measured with ``python -c 'import numpy'`` (0.19 CPU-s,
0.08 with this). ``OPENBLAS_THREAD_TIMEOUT=4`` makes it 2**4 cycles; the threads stay, so BLAS work
(``similar`` on a large library, ``train``) still gets every core. A value the user set is kept.
The CLI package imports this before anything that imports NumPy; a Python user's process is
left alone.
"""

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
