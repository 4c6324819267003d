"""mimicam: animate a portrait with your own face, live."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("mimicam")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
