"""culturesim: a multi-agent simulation engine for aligning language models to many cultures."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("culturesim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
