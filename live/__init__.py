"""mimicam: animate a portrait with your own face, live (the application layer)."""

from calibrate import __version__

__all__ = ["__version__"]
