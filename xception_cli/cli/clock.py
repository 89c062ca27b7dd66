"""When the ``xception`` process started: the closing line of ``predict`` and ``embed`` counts the
user's whole wait, imports included. The CLI package imports this first of all."""

import time

STARTED = time.perf_counter()
