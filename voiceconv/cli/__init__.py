"""Console scripts (``voiceconv-*``): thin argument parsing over the library.

OpenMP threads that spin-wait make torch on a busy CPU many times slower (measured
here: a training step 5-30x slower with 2 threads when another process shares the
2 cores). The console scripts therefore ask for passive waiting unless the user set
``OMP_WAIT_POLICY`` already; this must happen before torch is imported, which is
why it sits in the package ``__init__`` that every console script passes through.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
