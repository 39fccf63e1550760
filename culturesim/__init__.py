"""culturesim: a multi-agent simulation engine for aligning language models to many cultures."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("culturesim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

import os as _os

# transformers (5.x) swaps layers for "hub kernels" that it downloads from the Hugging Face Hub
# when a CUDA model loads, and fails offline (or without the `kernels` package). culturesim never
# fetches code or weights at run time, so that is off unless a user turns it on explicitly.
_os.environ.setdefault("USE_HUB_KERNELS", "0")
