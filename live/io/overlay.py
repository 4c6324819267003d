"""Drawing for ``mimicam live``: status overlay, badges and the pose-match guide.

Pure functions on RGB uint8 images (they draw on a copy unless told otherwise), so they are
tested without a window and shared by the preview window and the sinks (the "camera lost"
badge goes into every output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from calibrate.landmarks import FACE_OVAL
from live.geometry import apply_affine, compose_affine, invert_affine, letterbox_transform
from live.io.hotkeys import HOTKEY_HELP

__all__ = [
    "OverlayInfo",
    "draw_badge",
    "draw_overlay",
    "draw_pose_guide",
    "face_outline",
    "picture_in_picture",
]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = (255, 255, 255)
_RED = (220, 40, 40)
_GREEN = (60, 220, 90)
_YELLOW = (250, 210, 60)


@dataclass(frozen=True, slots=True)
class OverlayInfo:
    """What the preview overlay shows."""

    fps: float
    latency_ms: float | None
    engine: str
    tracking: str  # "face", "no face", "calibrating", ...
    portrait: str = ""
    passthrough: bool = False
    frozen: bool = False
    camera_lost: bool = False
    pose_match: float | None = None  # pose distance to the portrait (lower is closer)
    background: str = ""  # the background shown (B: next), when several are configured


def _text_block(image: np.ndarray, lines: Sequence[str], origin: tuple[int, int], *,
                scale: float, color: tuple[int, int, int] = _WHITE) -> None:
    """Lines of text on a dimmed box, drawn in place."""
    if not lines:
        return
    thickness = max(1, round(scale * 2))
    sizes = [cv2.getTextSize(t, _FONT, scale, thickness)[0] for t in lines]
    line_h = max(s[1] for s in sizes) + max(4, round(10 * scale))
    pad = max(4, round(8 * scale))
    w = max(s[0] for s in sizes) + 2 * pad
    h = line_h * len(lines) + pad
    x0, y0 = origin
    x1, y1 = min(image.shape[1], x0 + w), min(image.shape[0], y0 + h)
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = (image[y0:y1, x0:x1] * 0.4).astype(np.uint8)
    for i, text in enumerate(lines):
        y = y0 + pad + line_h * i + sizes[i][1]
        cv2.putText(image, text, (x0 + pad, y), _FONT, scale, color, thickness, cv2.LINE_AA)


def _scale_for(image: np.ndarray) -> float:
    return max(0.35, min(1.2, image.shape[0] / 1100.0))


def draw_overlay(image: np.ndarray, info: OverlayInfo, *, hotkeys: bool = True) -> np.ndarray:
    """A copy of ``image`` with the status (fps, latency, engine, tracking) at the top left
    and the hotkey list at the bottom left."""
    out = image.copy()
    scale = _scale_for(out)
    latency = f"{info.latency_ms:.0f} ms" if info.latency_ms is not None else "-"
    lines = [f"{info.fps:4.1f} fps   latency {latency}",
             f"engine {info.engine}   tracking: {info.tracking}"]
    if info.portrait:
        lines.append(f"portrait {info.portrait}")
    if info.background:
        lines.append(f"background {info.background}")
    if info.pose_match is not None:
        lines.append(f"pose match {info.pose_match:.3f} (lower is closer)")
    states = [name for name, on in (("PASSTHROUGH", info.passthrough), ("FROZEN", info.frozen),
                                    ("CAMERA LOST", info.camera_lost)) if on]
    if states:
        lines.append("  ".join(states))
    _text_block(out, lines, (10, 10), scale=scale)
    if hotkeys:
        keys = [f"{k}: {d}" for k, d in HOTKEY_HELP]
        line_h = round(30 * scale) + 4
        y0 = max(0, out.shape[0] - 10 - line_h * len(keys) - 8)
        _text_block(out, keys, (10, y0), scale=scale * 0.8, color=_YELLOW)
    return out


def draw_badge(image: np.ndarray, text: str, *, copy: bool = True) -> np.ndarray:
    """``image`` with a red badge (e.g. "camera lost") at the top right."""
    out = image.copy() if copy else image
    scale = _scale_for(out) * 1.4
    thickness = max(1, round(scale * 2))
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(6, round(10 * scale))
    x1 = out.shape[1] - 12
    x0 = max(0, x1 - tw - 2 * pad)
    y0, y1 = 12, 12 + th + 2 * pad
    cv2.rectangle(out, (x0, y0), (x1, y1), _RED, thickness=-1)
    cv2.putText(out, text, (x0 + pad, y1 - pad), _FONT, scale, _WHITE, thickness, cv2.LINE_AA)
    return out


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """The face-oval polyline (36, 2) of face-mesh ``landmarks`` (N >= 468, 2+)."""
    lm = np.asarray(landmarks)
    if lm.ndim != 2 or lm.shape[0] < 468:
        raise ValueError(f"landmarks: expected (468 or 478, 2+), got shape {lm.shape}")
    return lm[list(FACE_OVAL), :2].astype(np.float32)


def draw_pose_guide(camera: np.ndarray, portrait_outline: np.ndarray,
                    portrait_size: tuple[int, int], *,
                    user_outline: np.ndarray | None = None,
                    portrait_to_output: np.ndarray | None = None,
                    output_size: tuple[int, int] | None = None) -> np.ndarray:
    """The user's camera image with the portrait's face outline where, in the same framing,
    the portrait's face is, in green, and the user's own outline in yellow, so the user can
    line up position, size and tilt.

    ``portrait_outline`` is in portrait pixels, ``portrait_size`` is the portrait's (w, h),
    ``user_outline`` is in camera pixels. With ``portrait_to_output`` (the portrait's framing,
    a 2x3 affine into the ``output_size`` output) the outline is where the output shows the
    portrait's face, on the camera image as the output would show it (letterboxed, as in
    passthrough); without, the portrait is letterboxed onto the camera image.
    """
    out = camera.copy()
    h, w = out.shape[:2]
    if portrait_to_output is not None and output_size is not None:
        camera_to_output = letterbox_transform((w, h), output_size)
        m = compose_affine(invert_affine(camera_to_output), portrait_to_output)
    else:
        m = letterbox_transform(portrait_size, (w, h))
    pts = apply_affine(portrait_outline, m)
    thickness = max(1, round(h / 240))
    cv2.polylines(out, [np.round(pts).astype(np.int32)], True, _GREEN, thickness, cv2.LINE_AA)
    if user_outline is not None:
        cv2.polylines(out, [np.round(np.asarray(user_outline)).astype(np.int32)], True,
                      _YELLOW, thickness, cv2.LINE_AA)
    return out


def picture_in_picture(image: np.ndarray, small: np.ndarray, *, width_frac: float = 0.28,
                       margin: int = 12) -> np.ndarray:
    """A copy of ``image`` with ``small`` scaled to ``width_frac`` of its width, bottom right."""
    out = image.copy()
    h, w = out.shape[:2]
    sw = max(2, round(w * width_frac))
    sh = max(2, round(small.shape[0] * sw / small.shape[1]))
    sw, sh = min(sw, w - 2 * margin), min(sh, h - 2 * margin)
    if sw < 2 or sh < 2:
        return out
    thumb = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA)
    x0, y0 = w - margin - sw, h - margin - sh
    out[y0:y0 + sh, x0:x0 + sw] = thumb
    cv2.rectangle(out, (x0 - 1, y0 - 1), (x0 + sw, y0 + sh), _WHITE, 1)
    return out
