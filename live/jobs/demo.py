"""``mimicam demo``: animate a portrait without a camera and write an mp4.

By default the portrait is a real photo that scikit-image ships (``skimage.data.astronaut()``)
and the motion is the built-in scripted performance (:mod:`live.jobs.scripted_motion`: blink,
wink, smile, talk, brows, nod, turn, tilt), so the demo needs no files at all. With a driving
video the motion comes from the face in that video instead (face tracker per frame; frames
without a face hold the last pose and ease back to neutral), at the video's frame rate and
with its audio track.

The pipeline is the product's own: portrait face crop -> engine (``mesh`` by default) ->
:class:`~live.io.video.VideoWriter` (H.264 yuv420p, written to a temporary name and renamed when
complete), with a progress bar and, when a display is available, a preview window.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibrate.errors import InputError, NoFaceError
from live.packets import FaceCrop

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "mimicam-demo.mp4"
DEFAULT_SIZE = 512
SCRIPTED_FPS = 30
BUILTIN_PORTRAIT = "the built-in portrait (scikit-image's astronaut photo)"
# The portrait crop: this many face sizes (forehead-to-chin / cheek-to-cheek of the mesh),
# moved up a little so the hair and the chin both fit.
PORTRAIT_CROP_SCALE = 2.0
PORTRAIT_CROP_SHIFT_Y = -0.08
DRIVING_CROP_SIZE = 256


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What :func:`run_demo` produced."""

    output: Path
    frames: int
    fps: float
    video_seconds: float
    wall_seconds: float
    lost_frames: int
    driving: Path | None
    audio: bool

    @property
    def processing_fps(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0


# ------------------------------------------------------------------------------ portrait


if TYPE_CHECKING:
    from live.face.portraits import load_image as load_image
else:

    def __getattr__(name: str) -> Any:
        # ``load_image`` moved to live.face.portraits; it is re-exported here lazily, so importing
        # this module (``mimicam --help``) does not import OpenCV.
        if name == "load_image":
            from live.face.portraits import load_image

            return load_image
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def builtin_portrait() -> np.ndarray:
    """scikit-image's astronaut photo (Eileen Collins, public domain), RGB 512x512."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def portrait_face_crop(image: np.ndarray, *, size: int, name: str | Path) -> FaceCrop:
    """The square crop (``size`` px) around the one face of a portrait, with its face-mesh
    landmarks in crop pixels.

    Raises :class:`NoFaceError` when no face is found and :class:`InputError` when several
    are (the demo animates one face).
    """
    from live.face.tracking import crop_square, detect_faces, face_landmarks, square_box

    faces = detect_faces(image)
    path = name if isinstance(name, Path) else None
    label = None if path is not None else str(name)

    def where(msg: str) -> str:
        return msg if label is None else f"{label}: {msg}"

    if not faces:
        raise NoFaceError(where("no face found in the portrait"), path=path,
                          expected="a photo or painting with one clearly visible face",
                          got="no face")
    if len(faces) > 1:
        raise InputError(where(f"found {len(faces)} faces in the portrait; the demo animates "
                               "one (use `mimicam animate --multi-face` for group pictures)"),
                         path=path, expected="one face", got=f"{len(faces)} faces")
    landmarks = face_landmarks(image, box=faces[0])
    if landmarks is None:
        raise NoFaceError(where("the face in the portrait is too unclear for landmarks"),
                          path=path, expected="a clearly visible face",
                          got="a detection without face-mesh landmarks")
    center, side = square_box(landmarks, scale=PORTRAIT_CROP_SCALE,
                              shift_y=PORTRAIT_CROP_SHIFT_Y)
    crop = crop_square(image, center, side, size, landmarks=landmarks)
    # The mesh on the crop itself is what the engine will see of the portrait.
    own = face_landmarks(crop.image)
    if own is not None and own.shape == (478, 3):
        crop = FaceCrop(image=crop.image, crop_to_frame=crop.crop_to_frame,
                        frame_index=crop.frame_index, t_capture=crop.t_capture,
                        landmarks=own, score=crop.score)
    return crop


# ------------------------------------------------------------------------------- preview


def display_available() -> bool:
    """True when a desktop session is announced (X11/Wayland variables on Linux)."""
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


_PREVIEW_PROBE = (
    "import cv2, numpy as np\n"
    "cv2.namedWindow('mimicam-probe', cv2.WINDOW_AUTOSIZE)\n"
    "cv2.imshow('mimicam-probe', np.zeros((8, 8, 3), np.uint8))\n"
    "cv2.waitKey(1)\n"
    "cv2.destroyAllWindows()\n"
)


def preview_works(timeout: float = 15.0) -> tuple[bool, str]:
    """Whether OpenCV can open a window here, and why not.

    OpenCV's Qt backend aborts the whole process (it cannot be caught) when the display in
    ``DISPLAY`` is unreachable, so the check opens a window in a child process first.
    """
    if not display_available():
        return False, "no display (DISPLAY / WAYLAND_DISPLAY not set)"
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-c", _PREVIEW_PROBE], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"could not test the display: {exc}"
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        return False, lines[0] if lines else f"test window failed (exit {done.returncode})"
    return True, ""


class _Preview:
    """A cv2.imshow window that turns itself off (with a warning) if it fails."""

    TITLE = "mimicam demo"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def show(self, rgb: np.ndarray) -> None:
        if not self.enabled:
            return
        try:
            import cv2

            cv2.imshow(self.TITLE, rgb[..., ::-1])
            cv2.waitKey(1)
        except Exception as exc:  # no GUI backend, display gone, ...
            log.warning("preview disabled: %s", exc)
            self.enabled = False

    def close(self) -> None:
        if self.enabled:
            try:
                import cv2

                cv2.destroyWindow(self.TITLE)
                cv2.waitKey(1)
            except Exception:
                log.debug("closing the preview failed", exc_info=True)
            self.enabled = False


# ------------------------------------------------------------------------------- the run


def run_demo(
    output: str | os.PathLike[str] = DEFAULT_OUTPUT,
    *,
    portrait: str | os.PathLike[str] | None = None,
    driving: str | os.PathLike[str] | None = None,
    seconds: float | None = None,
    size: int = DEFAULT_SIZE,
    preview: bool | None = None,
    show_progress: bool | None = None,
    engine: str = "mesh",
) -> DemoResult:
    """Animate ``portrait`` (default: the built-in photo) and write ``output``.

    Without ``driving`` the motion is the scripted performance at 30 fps, stretched or
    squeezed to ``seconds`` (default: its natural ~10 s). With ``driving`` the face in that
    video drives the portrait at the video's frame rate, with its audio; ``seconds`` then
    limits how much of the video is used. ``preview=None`` shows a window only when a display
    is available; ``show_progress=None`` shows the bar only on a terminal.
    """
    from live.engines import create_engine
    from live.io.video import VideoWriter, probe_video
    from live.jobs.scripted_motion import ScriptedMotion

    if size < 64:
        raise InputError("output size too small", expected="at least 64 pixels",
                         got=f"{size}")
    if seconds is not None and not seconds > 0:
        raise InputError("--seconds must be positive", expected="a duration > 0",
                         got=f"{seconds}")
    out_path = Path(output)
    driving_path = Path(driving) if driving is not None else None
    info = probe_video(driving_path) if driving_path is not None else None
    limit: int | None = None  # driving frames to use
    if info is not None:
        fps: Any = info.fps_fraction
        audio_from = driving_path if info.has_audio else None
        if seconds is not None:
            limit = max(1, round(seconds * info.fps))
    else:
        fps = SCRIPTED_FPS
        audio_from = None

    t0 = time.perf_counter()
    show = _Preview(_want_preview(preview))
    frames = 0
    lost = 0
    with VideoWriter(out_path, fps=fps, size=(size, size), audio_from=audio_from) as writer:
        if portrait is None:
            image, name = builtin_portrait(), BUILTIN_PORTRAIT
            crop = portrait_face_crop(image, size=size, name=name)
        else:
            from live.face.portraits import load_image

            image = load_image(portrait)
            crop = portrait_face_crop(image, size=size, name=Path(portrait))
        assert crop.landmarks is not None
        # The mesh engine's warp grid (256 by default) may not exceed its size.
        options = {"grid": size} if engine == "mesh" and size < 256 else {}
        animator = create_engine(engine, size=size, **options)
        try:
            animator.set_portrait(animator.prepare(crop.image))
            if driving_path is None:
                motion = ScriptedMotion(crop.image, crop.landmarks, fps=SCRIPTED_FPS,
                                        seconds=seconds)
                frames, lost = _render(_scripted(motion, animator), len(motion), animator,
                                       writer, show, _disable(show_progress))
            else:
                assert info is not None
                frames, lost = _drive_from_video(driving_path, info, animator, writer, show,
                                                 limit, _disable(show_progress))
                if frames and lost == frames:
                    raise NoFaceError("no face found in any frame of the driving video",
                                      path=driving_path,
                                      expected="a video showing one face",
                                      got=f"no face in all {frames} frames")
        finally:
            animator.close()
            show.close()
        if frames == 0:
            raise InputError("nothing to animate", path=driving_path,
                             expected="at least one frame", got="0 frames")
    wall = time.perf_counter() - t0
    result = DemoResult(output=out_path, frames=frames, fps=float(fps),
                        video_seconds=frames / float(fps), wall_seconds=wall,
                        lost_frames=lost, driving=driving_path, audio=audio_from is not None)
    log.debug("demo: %d frames in %.1f s (%.1f fps), %d without a face -> %s", frames, wall,
             result.processing_fps, lost, out_path)
    return result


def _want_preview(preview: bool | None) -> bool:
    if preview is False or (preview is None and not display_available()):
        return False
    works, why = preview_works()
    if not works:
        log.warning("no preview window: %s", why)
    return works


def _disable(show_progress: bool | None) -> bool | None:
    return None if show_progress is None else not show_progress


def _render(faces: Iterable[tuple[FaceCrop | None, float]], total: int | None, animator: Any,
            writer: Any, show: _Preview, disable: bool | None) -> tuple[int, int]:
    """Animate, write and show a frame for every ``(driving face or None, time)``, with a
    progress bar; returns (frames, frames without a face)."""
    from live.io.video import progress

    frames = lost = 0
    bar = progress(total, desc="demo", disable=disable)
    try:
        for face, t in faces:
            if face is None:
                lost += 1
            out = animator.process(face, t)
            writer.write(out)
            show.show(out)
            frames += 1
            bar.update(1)
    finally:
        bar.close()
    return frames, lost


def _scripted(motion: Iterable[FaceCrop], animator: Any) -> Iterator[tuple[FaceCrop, float]]:
    """The scripted performance's faces and times; its first face is the neutral pose."""
    for face in motion:
        if face.frame_index == 0:
            animator.calibrate(face)
        yield face, face.frame_index / SCRIPTED_FPS


def _drive_from_video(path: Path, info: Any, animator: Any, writer: Any, show: _Preview,
                      limit: int | None, disable: bool | None) -> tuple[int, int]:
    """Track the face in the frames of ``path`` (the first ``limit`` of them, or all) and
    animate with it; returns (frames, frames without a face)."""
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    total = info.frame_count if limit is None else min(limit, info.frame_count or limit)
    with VideoReader(path) as reader, FaceTracker(crop_size=DRIVING_CROP_SIZE) as tracker:
        faces = ((tracker.process(frame).face,
                  frame.pts if frame.pts is not None else frame.index / info.fps)
                 for frame in itertools.islice(reader, limit))
        return _render(faces, total, animator, writer, show, disable)
