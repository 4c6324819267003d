"""Backgrounds behind the portrait's person: keep, blur, a colour, an image, or transparent.

One option for ``mimicam live``, ``animate`` and ``demo`` (``--background``; ``background`` in
their settings files), parsed once into a :class:`Background`:

- ``keep`` (the default): the portrait as it is;
- ``blur[:STRENGTH]``: the portrait's own background with the person taken out (the
  segmentation's plate, :mod:`live.face.segmentation`) and blurred; STRENGTH is the blur's
  sigma in percent of the output height (0.5 to 20, default 3);
- a colour: ``#00ff00``, ``#0f0`` or a name (``green``, ``blue``, ...: :data:`COLOR_NAMES`),
  e.g. for a chroma key in OBS;
- an image file: scaled to cover the output (aspect kept, centred, cut; never stretched);
- ``transparent`` (``mimicam animate`` only): the video written has an alpha channel, 0 on
  the background.

The person matte is segmented once per portrait and follows the animated head every frame
(:meth:`live.compose.Compositor.compose_matte` pastes the engine's matte of the animated crop
into the portrait's). :func:`build_layer` makes what is fixed per portrait and background (the
background picture and the still output with it, a :class:`BackgroundLayer`); per frame
:meth:`BackgroundLayer.apply` blends only the regions the animated crops changed:
``out = matte * frame + (1 - matte) * background`` (:func:`blend`, 8-bit OpenCV operations).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from calibrate.errors import InputError

if TYPE_CHECKING:
    from live.compose import Compositor
    from live.geometry import Framing

__all__ = [
    "BACKGROUND_HELP",
    "COLOR_NAMES",
    "Background",
    "BackgroundKind",
    "BackgroundLayer",
    "background_cycle",
    "blend",
    "build_layer",
    "layer_backdrop",
    "make_backdrop",
    "require_opaque",
    "rgba",
]

BackgroundKind = Literal["keep", "blur", "color", "image", "transparent"]
DEFAULT_BLUR = 3.0
"""``blur`` without a strength: sigma 3 % of the output height (~22 px at 720p)."""
BLUR_RANGE = (0.5, 20.0)
COLOR_NAMES: dict[str, tuple[int, int, int]] = {
    "green": (0, 255, 0),  # chroma-key green (OBS's "Green" key colour)
    "blue": (0, 0, 255),
    "magenta": (255, 0, 255),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
}
"""Colour names ``--background`` takes (RGB); any other colour as ``#rrggbb``."""
BACKGROUND_HELP = ("keep (default), blur[:STRENGTH] (sigma in % of the output height, "
                   f"{BLUR_RANGE[0]:g}-{BLUR_RANGE[1]:g}, default {DEFAULT_BLUR:g}), a colour "
                   "(#00ff00, " + ", ".join(n for n in COLOR_NAMES if n != "gray")
                   + ") or an image file (scaled to cover)")
"""The option's values, for ``--help`` texts."""
_EXPECTED = (f"keep, blur[:STRENGTH] (STRENGTH {BLUR_RANGE[0]:g}-{BLUR_RANGE[1]:g}), a colour "
             "(#rrggbb, #rgb, " + ", ".join(COLOR_NAMES) + "), an image file, or transparent "
             "(mimicam animate only)")
_HEX = re.compile(r"^#(?:[0-9a-f]{3}|[0-9a-f]{6})$")


@dataclass(frozen=True)
class Background:
    """What goes behind the person (see the module docstring); :meth:`parse` reads the
    option's text, ``str()`` writes it back."""

    kind: BackgroundKind = "keep"
    strength: float = DEFAULT_BLUR
    """``blur``: the Gaussian's sigma in percent of the output height."""
    color: tuple[int, int, int] = (0, 0, 0)
    """``color``: RGB."""
    image: Path | None = None
    """``image``: the picture file."""

    def __post_init__(self) -> None:
        if self.kind not in ("keep", "blur", "color", "image", "transparent"):
            raise InputError("unknown background", expected=_EXPECTED, got=repr(self.kind))
        lo, hi = BLUR_RANGE
        if self.kind == "blur" and not lo <= self.strength <= hi:
            raise InputError("background blur strength is out of range",
                             expected=f"blur:STRENGTH with STRENGTH {lo:g} to {hi:g} (% of the "
                             "output height)", got=f"{self.strength:g}")
        if self.kind == "color" and not all(0 <= int(c) <= 255 for c in self.color):
            raise InputError("background colour is out of range",
                             expected="RGB values 0 to 255", got=repr(self.color))
        if self.kind == "image" and self.image is None:
            raise InputError("background image missing", expected="an image file",
                             got="none")

    @classmethod
    def parse(cls, text: str | Background) -> Background:
        """``keep``, ``blur``, ``blur:5``, ``#00ff00``, ``#0f0``, ``green``, an image file's
        path, ``transparent``; anything else raises :class:`InputError` listing these. An
        image file must exist (it is read when the background is built)."""
        if isinstance(text, Background):
            return text
        raw = str(text).strip()
        low = raw.lower()
        if low in ("keep", "transparent"):
            return cls(low)  # type: ignore[arg-type]
        if low == "blur" or low.startswith("blur:"):
            value = low[5:].strip() if ":" in low else ""
            if not value:
                return cls("blur")
            try:
                strength = float(value)
            except ValueError:
                strength = math.nan
            if not math.isfinite(strength):
                raise InputError("bad background blur strength",
                                 expected=f"blur:STRENGTH with a number {BLUR_RANGE[0]:g} to "
                                 f"{BLUR_RANGE[1]:g}", got=repr(raw))
            return cls("blur", strength=strength)
        if _HEX.match(low):
            digits = low[1:]
            if len(digits) == 3:
                digits = "".join(d * 2 for d in digits)
            rgb = tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))
            return cls("color", color=(rgb[0], rgb[1], rgb[2]))
        if low in COLOR_NAMES:
            return cls("color", color=COLOR_NAMES[low])
        path = Path(raw).expanduser()
        if path.is_file():
            return cls("image", image=path)
        if path.is_dir():
            raise InputError("the background is a folder", path=path,
                             expected="an image file", got="a folder")
        if low.startswith("#") or not (path.suffix or "/" in raw or "\\" in raw):
            raise InputError("unknown background", expected=_EXPECTED, got=repr(raw))
        raise InputError("background image not found", path=path, expected="an image file",
                         got="no such file")

    def __str__(self) -> str:
        if self.kind == "blur":
            return "blur" if self.strength == DEFAULT_BLUR else f"blur:{self.strength:g}"
        if self.kind == "color":
            for name, rgb in COLOR_NAMES.items():
                if rgb == tuple(self.color):
                    return name
            return "#" + "".join(f"{int(c):02x}" for c in self.color)
        if self.kind == "image":
            return str(self.image)
        return self.kind

    @property
    def keep(self) -> bool:
        return self.kind == "keep"

    @property
    def transparent(self) -> bool:
        return self.kind == "transparent"

    @property
    def needs_matte(self) -> bool:
        """Everything but ``keep`` needs the person matte."""
        return self.kind != "keep"

    @property
    def paints(self) -> bool:
        """Whether a background picture is painted behind the person (not for ``keep`` and
        ``transparent``)."""
        return self.kind not in ("keep", "transparent")


def require_opaque(backgrounds: Iterable[Background], command: str) -> None:
    """Raise :class:`InputError` when ``backgrounds`` hold ``transparent``, which only
    ``mimicam animate`` writes (a virtual camera, an MJPEG stream and the demo's video have no
    alpha channel)."""
    if any(b.transparent for b in backgrounds):
        raise InputError(f"background transparent is for mimicam animate only, not {command}",
                         expected="keep, blur, a colour (green for a chroma key in OBS) or an "
                         "image file", got="transparent")


def background_cycle(backgrounds: Sequence[Background]) -> tuple[Background, ...]:
    """What ``B`` cycles through in ``mimicam live``: the configured backgrounds (the first
    is the one at start), then ``keep`` when it is not one of them; duplicates dropped."""
    cycle: list[Background] = []
    for b in [*backgrounds, Background()]:
        if b not in cycle:
            cycle.append(b)
    return tuple(cycle)


# ----------------------------------------------------------------------------------------------
# pixels


def blend(frame: np.ndarray, backdrop: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """``matte * frame + (1 - matte) * backdrop`` for RGB uint8 pictures of one size and a
    uint8 matte (255 = person): exactly ``backdrop`` where the matte is 0 and exactly
    ``frame`` where it is 255."""
    import cv2

    m3 = cv2.merge([matte, matte, matte])
    fg = cv2.multiply(frame, m3, scale=1.0 / 255.0)
    bg = cv2.multiply(backdrop, cv2.bitwise_not(m3), scale=1.0 / 255.0)
    return np.asarray(cv2.add(fg, bg))


def rgba(frame: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """The frame with the matte as its alpha channel: RGBA uint8 (H, W, 4)."""
    import cv2

    return np.asarray(cv2.merge([*cv2.split(frame), matte]))


Region = tuple[int, int, int, int]


class BackgroundLayer:
    """One portrait's output with one background (made by :func:`build_layer`).

    ``still`` is the still output (the compositor's picture) with the background already put
    behind the still matte; :meth:`apply` copies it and blends, in the regions an animated
    crop changed, the frame over :attr:`backdrop` by the frame's matte.
    """

    def __init__(self, background: Background, picture: np.ndarray, matte: np.ndarray,
                 backdrop: np.ndarray) -> None:
        if picture.shape != backdrop.shape or matte.shape != picture.shape[:2]:
            raise ValueError(f"picture {picture.shape}, backdrop {backdrop.shape} and matte "
                             f"{matte.shape} must be of one size")
        self.background = background
        self.backdrop = backdrop
        """The background picture (RGB uint8, the output's size)."""
        self.backdrop.flags.writeable = False
        self.still = blend(picture, backdrop, matte)
        """The still output (no animation) with the background."""
        self.still.flags.writeable = False

    @property
    def size(self) -> tuple[int, int]:
        return int(self.still.shape[1]), int(self.still.shape[0])

    def apply(self, frame: np.ndarray, matte: np.ndarray,
              regions: Iterable[Region | None] | None = None) -> np.ndarray:
        """``frame`` (the compositor's output) with the background behind ``matte`` (the
        frame's person matte, uint8 (H, W)): a new array. Outside ``regions`` (the rectangles
        the animated crops changed, :attr:`live.compose.Compositor.region`; None: the whole
        frame) the frame and its matte must be the still ones; there the result is
        :attr:`still`, without any work."""
        if frame.shape != self.still.shape or matte.shape != frame.shape[:2]:
            raise ValueError(f"frame {frame.shape} and matte {matte.shape}: expected "
                             f"{self.still.shape} and {self.still.shape[:2]}")
        if regions is None:
            return blend(frame, self.backdrop, matte)
        out = self.still.copy()
        for region in regions:  # overlapping regions: blended twice, to the same pixels
            if region is None:
                continue
            x0, y0, x1, y1 = region
            out[y0:y1, x0:x1] = blend(frame[y0:y1, x0:x1], self.backdrop[y0:y1, x0:x1],
                                      matte[y0:y1, x0:x1])
        return out


def build_layer(background: Background, compositor: Compositor, *,
                plate: np.ndarray | None = None, image: np.ndarray | None = None,
                backdrop: np.ndarray | None = None) -> BackgroundLayer | None:
    """The :class:`BackgroundLayer` of ``background`` for one portrait's ``compositor`` (made
    with the portrait's matte); None for ``keep`` and ``transparent`` (nothing to paint) and
    for a compositor without a matte (the segmentation found nobody: the background is kept).

    ``plate`` is the portrait's background plate (the person filled in; the portrait's size,
    or a copy of it at another size: :func:`~live.geometry.frame_picture`), needed by
    ``blur``; ``image`` the picture of an ``image`` background (RGB, any size: it
    is scaled to cover the output). ``backdrop``: the background picture already made
    (:func:`layer_backdrop` for the compositor's placement, e.g. on another thread while the
    compositor was made); then neither is needed.
    """
    matte = compositor.still_matte
    if not background.paints or matte is None:
        return None
    if backdrop is None:
        backdrop = layer_backdrop(background, compositor.placement, plate=plate, image=image)
    return BackgroundLayer(background, compositor.background, matte, backdrop)


def layer_backdrop(background: Background, placement: Framing, *,
                   plate: np.ndarray | None = None,
                   image: np.ndarray | None = None) -> np.ndarray:
    """The background picture :func:`build_layer` puts behind a portrait placed in the
    output by ``placement`` (a compositor's :attr:`~live.compose.Compositor.placement`):
    ``blur`` blurs ``plate`` framed as the portrait is, the letterbox bars of ``full``
    kept; the other kinds as :func:`make_backdrop` paints them."""
    from live.geometry import frame_picture

    framed = None
    bars = None
    if background.kind == "blur":
        if plate is None:
            raise ValueError("build_layer: a blur background needs the portrait's plate")
        framed = frame_picture(plate, placement)
        if placement.mode == "full":  # blur the photo, keep the letterbox bars
            bars = placement.photo_rect
    return make_backdrop(background, placement.output_size, plate=framed, photo_rect=bars,
                         image=image)


def make_backdrop(background: Background, size: tuple[int, int], *,
                  plate: np.ndarray | None = None, photo_rect: Region | None = None,
                  image: np.ndarray | None = None) -> np.ndarray:
    """The background picture of ``background`` (not ``keep`` or ``transparent``) at
    ``size`` (w, h), RGB uint8: ``blur`` blurs ``plate`` (the person filled in, already at
    ``size``; only its ``photo_rect`` when given, the rest, letterbox bars, kept), ``color``
    fills, ``image`` is ``image`` scaled to cover."""
    from live.geometry import blur, cover

    w, h = int(size[0]), int(size[1])
    if background.kind == "blur":
        if plate is None or plate.shape[:2] != (h, w):
            raise ValueError(f"make_backdrop: a blur background needs the plate at {w}x{h}")
        sigma = background.strength / 100.0 * h
        if photo_rect is None:
            return np.ascontiguousarray(blur(plate, sigma))
        backdrop = plate.copy()
        x0, y0, x1, y1 = photo_rect
        backdrop[y0:y1, x0:x1] = blur(np.ascontiguousarray(plate[y0:y1, x0:x1]), sigma)
        return backdrop
    if background.kind == "color":
        backdrop = np.empty((h, w, 3), np.uint8)
        backdrop[...] = np.asarray(background.color, np.uint8)
        return backdrop
    if background.kind == "image":
        if image is None:
            raise ValueError("make_backdrop: an image background needs its picture")
        return cover(image, (w, h))
    raise ValueError(f"make_backdrop: {background} paints no background")
