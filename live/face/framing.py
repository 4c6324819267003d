"""How ``mimicam live`` frames a portrait: the face it frames and animates, and where that face
sits in the output.

- :func:`face_box` and :func:`eye_line`: the face-mesh extent and eye line a framing is
  chosen from; :func:`portrait_framing` turns them into a
  :class:`~live.geometry.Framing` (:func:`live.geometry.framing_transform`), once per
  portrait, so the background does not swim when the head moves.
- :func:`pick_face`: face N of a group photo, counted from the left (``--face N``).
- :class:`PortraitOptions` and :func:`read_portrait_options`: a portrait folder's optional
  ``portraits.toml``, which sets the framing and face of single pictures::

      ["group_photo.jpg"]
      face = 3              # the third face from the left
      framing = "head"

      ["mona_lisa.jpg"]
      framing = "full"      # the whole painting, letterboxed

  Each table is named after a picture of the folder; its keys override ``--framing`` and
  ``--face`` (the settings file's ``framing`` and ``face``) for that picture.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibrate.errors import InputError
from calibrate.landmarks import LEFT_EYE_INNER, LEFT_EYE_OUTER, RIGHT_EYE_INNER, RIGHT_EYE_OUTER
from live.config import from_mapping, read_toml
from live.geometry import Framing, FramingMode, framing_transform

log = logging.getLogger(__name__)

__all__ = [
    "PORTRAITS_TOML",
    "PortraitOptions",
    "eye_line",
    "face_box",
    "pick_face",
    "portrait_framing",
    "read_portrait_options",
]

PORTRAITS_TOML = "portraits.toml"
"""The optional per-portrait settings file of a portrait folder."""

_EYE_CORNERS = (RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER)


def face_box(landmarks: np.ndarray) -> np.ndarray:
    """The face's box ``(x0, y0, x1, y1)`` in image pixels: the extent of its face-mesh
    landmarks ``(N, 2+)`` (forehead top to chin, cheek to cheek)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 2 or pts.shape[1] < 2:
        raise ValueError(f"landmarks: expected (N>=2, 2+) points, got shape {pts.shape}")
    return np.concatenate([pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)])


def eye_line(landmarks: np.ndarray) -> float:
    """The height (image pixels) of the eyes: the mean of the four eye corners."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 468:
        raise ValueError(f"landmarks: expected face-mesh points (468 or 478, 2+), "
                         f"got shape {pts.shape}")
    return float(pts[list(_EYE_CORNERS), 1].mean())


def portrait_framing(landmarks: np.ndarray, portrait_size: tuple[int, int],
                     output_size: tuple[int, int], mode: FramingMode, *,
                     reach_bottom: bool = False) -> Framing:
    """The framing ``mode`` of a ``portrait_size`` (w, h) portrait whose framed face has
    these face-mesh ``landmarks`` (image pixels), into ``output_size`` (w, h);
    ``reach_bottom``: :func:`~live.geometry.framing_transform`'s, for a person the photo's
    bottom edge cuts."""
    if mode == "full":
        return framing_transform(None, portrait_size, output_size, "full")
    return framing_transform(face_box(landmarks), portrait_size, output_size, mode,
                             eyes_y=eye_line(landmarks), reach_bottom=reach_bottom)


def pick_face(faces: Sequence[np.ndarray], number: int, *,
              path: str | Path | None = None) -> np.ndarray:
    """Face ``number`` (1 = the leftmost) of ``faces`` (landmarks, any order). Raises
    :class:`~calibrate.errors.InputError` naming the picture when there is no such face."""
    ordered = sorted(faces, key=lambda lm: float(np.asarray(lm)[:, 0].mean()))
    if not 1 <= number <= len(ordered):
        raise InputError(f"no face {number} in the portrait", path=path,
                         expected=f"--face 1..{len(ordered)} (counted from the left)",
                         got=f"{len(ordered)} face{'s' if len(ordered) != 1 else ''}")
    return ordered[number - 1]


@dataclass(frozen=True)
class PortraitOptions:
    """One picture's settings in a portrait folder's ``portraits.toml`` (None: the run's)."""

    framing: FramingMode | None = None
    """``shoulders``, ``head`` or ``full`` for this picture."""
    face: int | None = None
    """Frame and animate face N of this picture (1 = the leftmost)."""

    def __post_init__(self) -> None:
        if self.face is not None and self.face < 1:
            raise InputError("portrait setting face is out of range",
                             expected="a face number >= 1 (1 = the leftmost)",
                             got=repr(self.face))


def read_portrait_options(folder: str | Path,
                          names: Sequence[str] | None = None) -> dict[str, PortraitOptions]:
    """The per-picture settings of ``folder/portraits.toml`` by file name ({} without one).

    Strict like every settings file: a key that is not a picture's table, an unknown key or
    a wrong value is an :class:`~calibrate.errors.InputError` naming the file and the key. A
    table for a picture not in ``names`` (the folder's usable pictures, when given) is
    skipped with a warning.
    """
    path = Path(folder) / PORTRAITS_TOML
    if not path.is_file():
        return {}
    data = read_toml(path)
    options: dict[str, PortraitOptions] = {}
    for name, table in data.items():
        if not isinstance(table, Mapping):
            raise InputError(f"{PORTRAITS_TOML} key {name!r} is not a picture's table",
                             path=path, expected='a table per picture, e.g. ["photo.jpg"] '
                             'with framing = "head" and/or face = 2', got=repr(table))
        try:
            options[name] = from_mapping(PortraitOptions, table, prefix=f"{name}.")
        except InputError as exc:
            raise InputError(str(exc), path=path) from None
    if names is not None:
        for name in sorted(set(options) - set(names)):
            log.warning("%s: [%s] names no usable picture of the folder; ignoring it",
                        path, name)
            del options[name]
    return options
