"""mer: music emotion recognition that tags your music library."""

import os
from importlib.metadata import PackageNotFoundError, version

# Numba's parallel kernels and torch each keep an OpenMP pool; with the default busy-wait,
# the idle pool spins and torch inference after a kernel call ran ~10x slower on 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("mer-plugin")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
