"""``mimicam demo``: animate a portrait without a camera and write an mp4.

By default the portrait is a real photo that scikit-image ships (``skimage.data.astronaut()``)
and the motion is the built-in scripted performance (:mod:`live.jobs.scripted_motion`: blink,
wink, smile, talk, brows, nod, turn, tilt), so the demo needs no files at all. With a driving
video the motion comes from the face in that video instead (face tracker per frame; frames
without a face hold the last pose and ease back to neutral), at the video's frame rate and
with its audio track.

The pipeline is the product's own: portrait face crop -> engine (``mesh`` by default) ->
:class:`~live.io.video.VideoWriter` (H.264 yuv420p, written to a temporary name and renamed when
complete), with a progress bar and, when a display is available, a preview window. A
``background`` (:mod:`live.background`; not ``transparent``) is put behind the crop's person,
whose matte follows the head (the engine's ``last_matte``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibrate.errors import InputError, NoFaceError
from live.background import Background, blend, make_backdrop, require_opaque
from live.engines.base import EngineOptions, crop_matte
from live.packets import FaceCrop

if TYPE_CHECKING:
    from live.io.sinks import PreviewSink

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "mimicam-demo.mp4"
DEFAULT_SIZE = 512
SCRIPTED_FPS = 30
BUILTIN_PORTRAIT = "the built-in portrait (scikit-image's astronaut photo)"
# The portrait crop: this many face sizes (forehead-to-chin / cheek-to-cheek of the mesh),
# moved up a little so the hair and the chin both fit.
PORTRAIT_CROP_SCALE = 2.0
PORTRAIT_CROP_SHIFT_Y = -0.08
PREVIEW_TITLE = "mimicam demo"
_MAX_PORTRAIT_FACES = 20  # faces counted in a portrait to tell the user how many it shows


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
    """The square crop (``size`` px) around the one face of a portrait, inside the photo
    (:func:`live.geometry.fit_square`), with its face-mesh landmarks in crop pixels.

    The face search is :func:`live.face.portraits.find_faces` (the one face finder). Raises
    :class:`NoFaceError` when no face is found and :class:`InputError` when several are (the
    demo animates one face).
    """
    from live.face.portraits import find_faces
    from live.face.tracking import face_landmarks, square_box
    from live.geometry import crop_square, fit_square

    faces = find_faces(image, max_faces=_MAX_PORTRAIT_FACES, path=name, what="portrait")
    if len(faces) > 1:
        raise InputError(f"found {len(faces)} faces in the portrait; the demo animates one "
                         "(use `mimicam animate --multi-face` for group pictures)",
                         path=name, expected="one face", got=f"{len(faces)} faces")
    (landmarks,) = faces
    center, side = square_box(landmarks, scale=PORTRAIT_CROP_SCALE,
                              shift_y=PORTRAIT_CROP_SHIFT_Y)
    # the demo's output is the crop itself: kept inside the photo, it shows no made-up
    # border (a tight photo's edge repeated as streaks); the face may sit off centre
    h, w = image.shape[:2]
    center, side = fit_square(center, side, (w, h))
    crop = crop_square(image, center, side, size, landmarks=landmarks)
    # The mesh on the crop itself is what the engine will see of the portrait.
    own = face_landmarks(crop.image)
    if own is not None and own.shape == (478, 3):
        crop = FaceCrop(image=crop.image, crop_to_frame=crop.crop_to_frame,
                        frame_index=crop.frame_index, t_capture=crop.t_capture,
                        landmarks=own, score=crop.score)
    return crop


# ------------------------------------------------------------------------------- preview


def _open_preview(preview: bool | None) -> PreviewSink | None:
    """The preview window (:class:`~live.io.sinks.PreviewSink`, the one ``mimicam live``
    shows) when ``preview`` asks for it (None: when a display is available) and OpenCV can
    open one here; else None, with a warning saying why."""
    from live.io.sinks import PreviewSink, SinkUnavailable, display_available, preview_works

    if preview is False or (preview is None and not display_available()):
        return None
    works, why = preview_works()
    if not works:
        log.warning("no preview window: %s", why)
        return None
    try:
        return PreviewSink(PREVIEW_TITLE)
    except SinkUnavailable as exc:
        log.warning("no preview window: %s", exc)
        return None


def _show(preview: PreviewSink | None, image: np.ndarray) -> PreviewSink | None:
    """Show ``image`` in ``preview``; returns the window, or None once it failed (it is then
    closed, with a warning, and not used again)."""
    if preview is None:
        return None
    try:
        preview.send(image, time.perf_counter())
        preview.poll_key()
    except Exception as exc:  # no GUI backend, display gone, ...
        log.warning("preview disabled: %s", exc)
        with contextlib.suppress(Exception):
            preview.close()
        return None
    return preview


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
    options: EngineOptions | None = None,
    overwrite: bool = False,
    background: Background | None = None,
) -> DemoResult:
    """Animate ``portrait`` (default: the built-in photo) and write ``output``.

    Without ``driving`` the motion is the scripted performance at 30 fps, stretched or
    squeezed to ``seconds`` (default: its natural ~10 s). With ``driving`` the face in that
    video drives the portrait at the video's frame rate, with its audio; ``seconds`` then
    limits how much of the video is used. ``preview=None`` shows a window only when a display
    is available; ``show_progress=None`` shows the bar only on a terminal.

    ``options`` are the engines' options (``[engine.mesh]`` of ``--config``, the engine flags);
    the engine animates crops of ``size`` pixels unless they set its ``size`` (the frames are
    then resized to ``size``).

    ``output``'s extension picks the format (``.mp4``, ``.mov``, ``.mkv``, ``.webm``, ``.gif``);
    an existing ``output`` is kept (:class:`InputError`, before any work) unless
    ``overwrite``, and an output that is the portrait or the driving video is refused.
    ``background`` (default ``keep``) goes behind the portrait's person.
    """
    from live.engines import create_engine
    from live.io.video import VideoWriter, check_output, probe_video
    from live.jobs.scripted_motion import ScriptedMotion

    if size < 64:
        raise InputError("output size too small", expected="at least 64 pixels",
                         got=f"{size}")
    if seconds is not None and not seconds > 0:
        raise InputError("--seconds must be positive", expected="a duration > 0",
                         got=f"{seconds}")
    background = background if background is not None else Background()
    require_opaque([background], "mimicam demo")
    out_path = Path(output)
    driving_path = Path(driving) if driving is not None else None
    check_output(out_path, overwrite=overwrite,
                 inputs={"portrait": portrait, "driving video": driving_path})
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
    show = _open_preview(preview)
    frames = 0
    lost = 0
    with VideoWriter(out_path, fps=fps, size=(size, size), audio_from=audio_from,
                     overwrite=overwrite) as writer:
        audio_from = writer.audio_from  # None for a GIF (no sound)
        if portrait is None:
            image, name = builtin_portrait(), BUILTIN_PORTRAIT
            crop = portrait_face_crop(image, size=size, name=name)
        else:
            from live.face.portraits import load_image

            image = load_image(portrait)
            crop = portrait_face_crop(image, size=size, name=Path(portrait))
        assert crop.landmarks is not None
        engine_options = options or EngineOptions()
        if engine_options.of(engine).size is None:  # the engine's crop: the output size
            engine_options = engine_options.apply(crop_size=size)
        painter = _painter(background, crop.image, writer.size)
        animator = create_engine(engine, engine_options)
        try:
            animator.set_portrait(animator.prepare(crop.image))
            if driving_path is None:
                motion = ScriptedMotion(crop.image, crop.landmarks, fps=SCRIPTED_FPS,
                                        seconds=seconds)
                frames, lost = _render(_scripted(motion, animator), len(motion), animator,
                                       writer, show, _disable(show_progress), painter)
            else:
                assert info is not None
                frames, lost = _drive_from_video(driving_path, info, animator, writer, show,
                                                 limit, _disable(show_progress), painter)
                if frames and lost == frames:
                    raise NoFaceError("no face found in any frame of the driving video",
                                      path=driving_path,
                                      expected="a video showing one face",
                                      got=f"no face in all {frames} frames")
        finally:
            animator.close()
            if show is not None:
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


def _disable(show_progress: bool | None) -> bool | None:
    return None if show_progress is None else not show_progress


Painter = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]
"""(output frame, the engine's matte of its crop or None) -> the frame with the background."""


def _painter(background: Background, crop: np.ndarray, size: tuple[int, int]
             ) -> Painter | None:
    """What puts ``background`` behind the person of the portrait ``crop`` in the ``size``
    output (the crop resized): the crop is segmented once; None for ``keep`` and when nobody
    is found (one warning)."""
    if not background.needs_matte:
        return None
    from live.face.portraits import load_image
    from live.face.segmentation import prepare_layers

    image = None if background.image is None \
        else load_image(background.image, what="background image")
    layers = prepare_layers(crop)
    if layers is None:
        log.warning("the segmentation found no person in the portrait; it keeps its own "
                    "background")
        return None
    still = _resized_matte(layers.matte_u8, size)
    backdrop = make_backdrop(background, size, plate=_resized(layers.plate, size),
                             image=image)

    def paint(frame: np.ndarray, matte: np.ndarray | None) -> np.ndarray:
        return blend(frame, backdrop, still if matte is None else _resized_matte(matte, size))

    return paint


def _render(faces: Iterable[tuple[FaceCrop | None, float]], total: int | None, animator: Any,
            writer: Any, show: PreviewSink | None, disable: bool | None,
            painter: Painter | None = None) -> tuple[int, int]:
    """Animate, write and show a frame for every ``(driving face or None, time)``, with a
    progress bar (and the background of ``painter``); returns (frames, frames without a
    face)."""
    from live.io.video import progress

    frames = lost = 0
    bar = progress(total, desc="demo", disable=disable)
    try:
        for face, t in faces:
            if face is None:
                lost += 1
            out = _resized(animator.process(face, t), writer.size)
            if painter is not None:
                out = painter(out, crop_matte(animator))
            writer.write(out)
            show = _show(show, out)
            frames += 1
            bar.update(1)
    finally:
        bar.close()
    return frames, lost


def _resized_matte(matte: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 matte at ``size`` (w, h), like :func:`_resized` does the picture."""
    if (matte.shape[1], matte.shape[0]) == tuple(size):
        return matte
    import cv2

    interp = cv2.INTER_AREA if matte.shape[1] > size[0] else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(matte, tuple(size), interpolation=interp))


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` at ``size`` (w, h): the engine's crop size may differ from the output's."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    import cv2

    interp = cv2.INTER_AREA if image.shape[1] > size[0] else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(image, tuple(size), interpolation=interp))


def _scripted(motion: Iterable[FaceCrop], animator: Any) -> Iterator[tuple[FaceCrop, float]]:
    """The scripted performance's faces and times; its first face is the neutral pose."""
    for face in motion:
        if face.frame_index == 0:
            animator.calibrate(face)
        yield face, face.frame_index / SCRIPTED_FPS


def _drive_from_video(path: Path, info: Any, animator: Any, writer: Any,
                      show: PreviewSink | None, limit: int | None, disable: bool | None,
                      painter: Painter | None = None) -> tuple[int, int]:
    """Track the face in the frames of ``path`` (the first ``limit`` of them, or all) and
    animate with it; returns (frames, frames without a face)."""
    from live.engines.base import driving_crop_size
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    total = info.frame_count if limit is None else min(limit, info.frame_count or limit)
    with VideoReader(path) as reader, \
            FaceTracker(crop_size=driving_crop_size(animator, offline=True)) as tracker:
        faces = ((tracker.process(frame).face, frame.time(info.fps))
                 for frame in itertools.islice(reader, limit))
        return _render(faces, total, animator, writer, show, disable, painter)
