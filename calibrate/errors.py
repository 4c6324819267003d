"""Errors that mimicam reports to users.

Every error says what was expected and what arrived. The CLI turns a :class:`MimicamError`
into one line on stderr and exit code 2; library code only raises.
"""

from __future__ import annotations

from pathlib import Path


class MimicamError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""


class InputError(MimicamError):
    """A file or argument given by the user is unusable."""

    def __init__(self, what: str, *, path: str | Path | None = None, expected: str = "",
                 got: str = "") -> None:
        parts = [f"{path}: {what}" if path is not None else what]
        if expected:
            parts.append(f"expected {expected}")
        if got:
            parts.append(f"got {got}")
        super().__init__("; ".join(parts))
        self.path = Path(path) if path is not None else None


class NoFaceError(InputError):
    """No face where one is required (a portrait, or a whole driving video)."""


class WeightsError(MimicamError):
    """A checkpoint is missing, unreadable or of the wrong layout."""


class BackendError(MimicamError):
    """No model runtime could be created; the message lists every backend tried and why."""
