"""``mimicam bench --job reconstruct`` and ``--job identity``: how well an engine reproduces a
face (the First Order Motion Model paper's self-reconstruction protocol) and whether it keeps
the portrait's identity.

Reconstruction (``--job reconstruct``), per driving clip (default: every video in
``../shared/fixtures/driving``):

1. the clip's frame 0 is saved as a PNG portrait and the clip itself drives it through the
   real offline job (:func:`live.jobs.animate.run_animate`, no audio) into a temporary mp4;
2. output and real frames are decoded in lock step, centre-cropped to a square and resized to
   256x256 (:func:`eval_view`);
3. per clip: L1 (mean absolute RGB difference in [0, 1], every frame), PSNR (dB, from the
   clip's mean squared error), and on every ``--every``-th frame (default 2) dlib's
   measures: AKD (mean pixel distance of the 68 landmarks of output vs real frame) and AED
   (L2 distance of the 128-D face embeddings), over the frames where dlib finds a face in
   both; "lost" counts evaluated frames where dlib finds a face in the real frame but none in
   the output;
4. the same for a frozen portrait (every output frame = frame 0), and the ratios engine /
   frozen (below 1: better than not moving at all); for PSNR the gain in dB;
5. a contact sheet per clip (rows real / output / absolute-difference heat map at 6 frames
   spread over the clip, 128 px cells) in ``--sheets DIR`` (default: a new temporary folder,
   named in the report).

Identity (``--job identity``): every fixture portrait x every clip through ``run_animate``
(the first ``--max-frames`` frames, default 60); the output is cut to the portrait's face
region (the face the job animates: the largest one; :data:`REGION_SCALE` face sizes wide, at
256 px) and, every ``--every``-th frame (default 10), dlib's embedding of the face there is
compared with the portrait's own (median per pair) and with the driver's (its frame 0). A face
dlib's detector misses (upsampling once, then twice) is measured in the box of the portrait's
face-mesh landmarks instead (the output's own, found for ``transfer_ratio``), and counted as
"boxed". Reported per pair: distance to the portrait, to the
driver, portrait-to-driver, and ``driver ratio = d(output, driver) / d(portrait, driver)``
(near 1: the output looks no more like the driver than the portrait did), with the motion
``transfer_ratio`` of :class:`live.bench.fidelity.FidelityMeter` on the same face region.
Targets: median distance to the portrait <= 0.4, smallest driver ratio >= 0.9. Two references
for ``transfer_ratio``: per clip its own frames scored as an output (:func:`transfer_floor`,
a perfect engine on its own face) and per pair a perfect warp of the portrait
(:func:`transfer_warp`: its landmarks moved exactly where the meter expects them).

The evaluation libraries (``dlib-bin``, ``face-recognition-models``: the ``bench`` extra) are
imported only when a job runs; without them the job stops with one line naming the extra.
Library functions log; only :func:`run` (the command's handler) prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import InputError, MimicamError, WeightsError
from live.bench import common as bench_common
from live.bench.common import FIXTURES, SHEET_MAX_BYTES, load_engine_options, write_png

log = logging.getLogger(__name__)

DRIVING_DIR = FIXTURES / "driving"
PORTRAITS_DIR = FIXTURES / "portraits"
EVAL_SIZE = 256
"""Side of the square the metrics are computed on (the FOMM paper's resolution)."""
RECONSTRUCT_EVERY = 2
IDENTITY_EVERY = 10
IDENTITY_MAX_FRAMES = 60
SHEET_FRAMES = 6
SHEET_CELL = 128
HEAT_FULL_SCALE = 0.25
"""Absolute difference (mean over RGB, in [0, 1]) shown at the top of the heat map's colours."""
REGION_SCALE = 2.0
"""Identity job: side of the face region, in face sizes (forehead to chin)."""
DLIB_INNER_LIPS = slice(60, 68)
"""dlib's 68 landmarks: the inner lip line (mouth corners at 60 and 64)."""
MOUTH_OPEN_PX2 = 40.0
"""Reconstruct job: a real frame's mouth counts as open when dlib's inner lip polygon covers
this many pixels at :data:`EVAL_SIZE` (its mouth L1 is scored there)."""
TARGET_PORTRAIT_DISTANCE = 0.4
TARGET_DRIVER_RATIO = 0.9
TARGET_TRANSFER_MEDIAN = 0.15
TARGET_TRANSFER_WORST = 0.4
"""#11's motion-transfer targets: median ``transfer_ratio`` over the pairs below the first,
no pair above the second."""
BENCH_EXTRA = 'pip install -e ".[bench]"'

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------------- metrics


def eval_view(image: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray:
    """The centred square of ``image`` (RGB uint8) resized to ``size`` x ``size`` (area
    filter when shrinking), C-contiguous uint8."""
    import cv2

    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    square = image[y0:y0 + side, x0:x0 + side]
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        square = cv2.resize(square, (size, size), interpolation=interp)
    return np.ascontiguousarray(square, dtype=np.uint8)


def _check_pair(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: expected images of one shape, got {a.shape} and {b.shape}")


def l1_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images, in [0, 1] (0: identical)."""
    _check_pair(a, b, "l1_distance")
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64)))) / 255.0


def mean_squared_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference of two uint8 images with pixel values scaled to [0, 1]."""
    _check_pair(a, b, "mean_squared_error")
    d = (a.astype(np.float64) - b.astype(np.float64)) / 255.0
    return float(np.mean(d * d))


def psnr_db(mse: float) -> float:
    """PSNR (dB) of a mean squared error of [0, 1] pixels; inf for 0."""
    return math.inf if mse <= 0.0 else -10.0 * math.log10(mse)


def opening_mask(landmarks: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray | None:
    """The inside of a face's open mouth, (size, size) bool, from dlib's 68 landmarks of a
    ``size`` px view: its inner lip polygon, or None when that covers less than
    :data:`MOUTH_OPEN_PX2` pixels (a closed mouth)."""
    import cv2

    from live.engines.mesh.mouth import polygon_area

    poly = np.asarray(landmarks, np.float64)[DLIB_INNER_LIPS]
    if polygon_area(poly) < MOUTH_OPEN_PX2:
        return None
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16.0).astype(np.int32)], (1,), cv2.LINE_8, 4)
    return mask.astype(bool) if mask.any() else None


def masked_l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """:func:`l1_distance` over the pixels where ``mask`` (bool, the images' height x width)
    is set."""
    _check_pair(a, b, "masked_l1")
    return float(np.mean(np.abs(a[mask].astype(np.float64) - b[mask].astype(np.float64)))) / 255.0


def keypoint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance of two landmark sets ``(N, 2)`` (AKD for one frame)."""
    _check_pair(a, b, "keypoint_distance")
    return float(np.mean(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64),
                                         axis=1)))


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """L2 distance of two face embeddings (AED for one frame; dlib: same person below ~0.6)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def ratio(value: float, baseline: float) -> float:
    """``value / baseline``; nan when either is not a finite number or the baseline is 0."""
    if not (math.isfinite(value) and math.isfinite(baseline)) or baseline == 0.0:
        return math.nan
    return value / baseline


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _median(values: Iterable[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


# ------------------------------------------------------------------------------ dlib faces


def _dlib_models() -> tuple[Any, Path, Path]:
    """``(dlib, landmark model, embedding model)``; :class:`MimicamError` naming the extra
    when the packages are missing."""
    hint = (f"the reconstruct and identity benchmarks need dlib and its models; install them "
            f"with: {BENCH_EXTRA}")
    try:
        import dlib
    except ImportError as exc:
        raise MimicamError(f"{hint} (import dlib: {exc})") from None
    try:
        with warnings.catch_warnings():  # pkg_resources' deprecation notice
            warnings.simplefilter("ignore")
            import face_recognition_models as frm
        pose = Path(frm.pose_predictor_model_location())
        rec = Path(frm.face_recognition_model_location())
    except ImportError as exc:
        # The package's __init__ imports pkg_resources (setuptools); without it, find the
        # model files where the package keeps them.
        import importlib.util

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise MimicamError(f"{hint} (import face_recognition_models: {exc})") from None
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        pose = models / "shape_predictor_68_face_landmarks.dat"
        rec = models / "dlib_face_recognition_resnet_model_v1.dat"
    for path in (pose, rec):
        if not path.is_file():
            raise MimicamError(f"{hint} (model file {path} not found)")
    return dlib, pose, rec


@dataclass(frozen=True, eq=False)
class FaceFeatures:
    """One face dlib found: its box ``(left, top, right, bottom)``, the 68 landmarks
    ``(68, 2)``, the 128-D embedding (None when not asked for), and whether the detector
    found the box (False: the caller's fallback box was used)."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    embedding: np.ndarray | None
    detected: bool = True


class DlibFaces:
    """dlib's frontal face detector (upsampling ``upsample`` times), the 68-point shape
    predictor and the ResNet face embedding, from ``face-recognition-models``."""

    def __init__(self, *, upsample: int = 1) -> None:
        dlib, pose, rec = _dlib_models()
        self._dlib = dlib
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(pose))
        self._encoder = dlib.face_recognition_model_v1(str(rec))

    def find(self, image: np.ndarray, *, near: Sequence[float] | None = None,
             embedding: bool = True, upsample: int | None = None,
             fallback_box: Sequence[float] | None = None) -> FaceFeatures | None:
        """The largest face of an RGB uint8 image (with ``near=(x, y)``: the face whose box
        centre is nearest that point), or None when dlib finds none. With ``fallback_box``
        ``(left, top, right, bottom)``, a face the detector misses is measured in that box
        (``detected=False``)."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        rects = list(self._detector(image, self.upsample if upsample is None else upsample))
        if not rects:
            if fallback_box is None:
                return None
            left, top, right, bottom = (round(float(v)) for v in fallback_box)
            return self.measure(image, self._dlib.rectangle(left, top, right, bottom),
                                embedding=embedding, detected=False)
        if near is None:
            rect = max(rects, key=lambda r: r.width() * r.height())
        else:
            nx, ny = float(near[0]), float(near[1])
            rect = min(rects, key=lambda r: ((r.left() + r.right()) / 2 - nx) ** 2
                       + ((r.top() + r.bottom()) / 2 - ny) ** 2)
        return self.measure(image, rect, embedding=embedding)

    def measure(self, image: np.ndarray, rect: Any, *, embedding: bool = True,
                detected: bool = True) -> FaceFeatures:
        """Landmarks (and embedding) of the face in a ``dlib.rectangle`` of the image."""
        shape = self._predictor(image, rect)
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        emb = None
        if embedding:
            emb = np.asarray(self._encoder.compute_face_descriptor(image, shape), np.float64)
        return FaceFeatures((rect.left(), rect.top(), rect.right(), rect.bottom()), pts, emb,
                            detected)


# ---------------------------------------------------------------------------- contact sheet


def heat_map(real: np.ndarray, output: np.ndarray) -> np.ndarray:
    """RGB heat map (``cv2.COLORMAP_JET``) of the mean-over-RGB absolute difference, with
    :data:`HEAT_FULL_SCALE` at the top of the colours."""
    import cv2

    _check_pair(real, output, "heat_map")
    diff = np.abs(real.astype(np.float32) - output.astype(np.float32)).mean(axis=2) / 255.0
    level = np.clip(diff / HEAT_FULL_SCALE * 255.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(level, cv2.COLORMAP_JET)[:, :, ::-1])


def _label(image: np.ndarray, text: str) -> None:
    import cv2

    for color, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(image, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, thick,
                    cv2.LINE_AA)


def contact_sheet(samples: Sequence[tuple[int, np.ndarray, np.ndarray]], *,
                  cell: int = SHEET_CELL) -> np.ndarray:
    """An RGB sheet: one column per ``(frame index, real, output)``, rows real / output /
    difference heat map, each cell ``cell`` px, labelled."""
    import cv2

    if not samples:
        raise ValueError("contact_sheet: expected at least one frame")
    columns = []
    for index, real, out in samples:
        cells = []
        for name, img in (("real", real), ("output", out), ("|diff|", heat_map(real, out))):
            small = cv2.resize(img, (cell, cell), interpolation=cv2.INTER_AREA)
            _label(small, f"{name} {index}" if name == "real" else name)
            cells.append(small)
        columns.append(np.vstack(cells))
    return np.ascontiguousarray(np.hstack(columns))


def sheet_indices(frames: int, count: int = SHEET_FRAMES) -> list[int]:
    """``count`` frame indices spread evenly over ``frames`` frames (first and last included)."""
    if frames <= 0:
        return []
    return sorted({round(x) for x in np.linspace(0, frames - 1, min(count, frames))})


# --------------------------------------------------------------------------- reconstruction


@dataclass
class ClipMetrics:
    """One clip's scores for the engine and for the frozen portrait (frame 0 held)."""

    clip: str
    frames: int = 0
    evaluated: int = 0
    """Frames where dlib ran (every ``every``-th)."""
    real_faces: int = 0
    """Evaluated frames with a dlib face in the real frame."""
    scored: int = 0
    """Evaluated frames with a face in both the real and the output frame (AKD/AED frames)."""
    lost: int = 0
    """Evaluated frames with a face in the real frame and none in the output."""
    l1: float = math.nan
    l1_frozen: float = math.nan
    psnr: float = math.nan
    psnr_frozen: float = math.nan
    akd: float = math.nan
    akd_frozen: float = math.nan
    aed: float = math.nan
    aed_frozen: float = math.nan
    mouth_frames: int = 0
    """Evaluated frames with a face in the real frame whose mouth is open
    (:func:`opening_mask`): where the mouth L1 is scored."""
    mouth_l1: float = math.nan
    """L1 inside the real frame's open mouth (dlib's inner lip polygon): the interior the
    engine drew (teeth, tongue, throat) against the real one."""
    mouth_l1_frozen: float = math.nan
    driving_lost: int = 0
    """Driving frames the job's own tracker found no face in (pose held)."""
    animate_seconds: float = 0.0
    eval_seconds: float = 0.0
    sheet: str | None = None
    sheet_bytes: int = 0
    floor: dict[str, Any] | None = None
    """With ``--floor``: the same scores for the real clip itself written by the job's video
    writer (a perfect engine's output): L1, AKD and AED ratios, PSNR gain, faces lost."""

    @property
    def l1_ratio(self) -> float:
        return ratio(self.l1, self.l1_frozen)

    @property
    def psnr_gain_db(self) -> float:
        if not (math.isfinite(self.psnr) and math.isfinite(self.psnr_frozen)):
            return math.nan
        return self.psnr - self.psnr_frozen

    @property
    def akd_ratio(self) -> float:
        return ratio(self.akd, self.akd_frozen)

    @property
    def aed_ratio(self) -> float:
        return ratio(self.aed, self.aed_frozen)

    @property
    def mouth_l1_ratio(self) -> float:
        return ratio(self.mouth_l1, self.mouth_l1_frozen)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "l1_ratio": self.l1_ratio, "psnr_gain_db": self.psnr_gain_db,
                "akd_ratio": self.akd_ratio, "aed_ratio": self.aed_ratio,
                "mouth_l1_ratio": self.mouth_l1_ratio}


@dataclass
class _Sums:
    """Running sums of one clip's evaluation."""

    l1: list[float] = field(default_factory=list)
    l1_frozen: list[float] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    mse_frozen: list[float] = field(default_factory=list)
    akd: list[float] = field(default_factory=list)
    akd_frozen: list[float] = field(default_factory=list)
    aed: list[float] = field(default_factory=list)
    aed_frozen: list[float] = field(default_factory=list)
    mouth: list[float] = field(default_factory=list)
    mouth_frozen: list[float] = field(default_factory=list)


def evaluate_frames(real: Iterable[np.ndarray], output: Iterable[np.ndarray], *,
                    clip: str = "", faces: DlibFaces | None = None,
                    every: int = RECONSTRUCT_EVERY, sheet_at: Sequence[int] = (),
                    ) -> tuple[ClipMetrics, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Score output frames against the real ones (any sizes: each is :func:`eval_view`-ed).

    The real clip's first frame is the portrait: the frozen baseline shows it at every frame.
    Without ``faces`` only L1 and PSNR are computed. Returns the metrics and the
    ``(index, real, output)`` 256 px views at the frames in ``sheet_at``.
    """
    if every < 1:
        raise ValueError(f"every: expected >= 1, got {every}")
    wanted = set(sheet_at)
    samples: list[tuple[int, np.ndarray, np.ndarray]] = []
    m = ClipMetrics(clip)
    s = _Sums()
    frozen: np.ndarray | None = None
    frozen_face: FaceFeatures | None = None
    for i, (real_img, out_img) in enumerate(zip(real, output, strict=False)):
        r = eval_view(real_img)
        o = eval_view(out_img)
        if frozen is None:
            frozen = r
            if faces is not None:
                frozen_face = faces.find(frozen)
                if frozen_face is None:
                    log.warning("%s: dlib finds no face in frame 0; no frozen AKD/AED", clip)
        m.frames += 1
        s.l1.append(l1_distance(o, r))
        s.l1_frozen.append(l1_distance(frozen, r))
        s.mse.append(mean_squared_error(o, r))
        s.mse_frozen.append(mean_squared_error(frozen, r))
        if i in wanted:
            samples.append((i, r, o))
        if faces is None or i % every:
            continue
        m.evaluated += 1
        real_face = faces.find(r)
        if real_face is None:
            continue
        m.real_faces += 1
        opening = opening_mask(real_face.landmarks, r.shape[0])  # (r: a square view)
        if opening is not None:
            m.mouth_frames += 1
            s.mouth.append(masked_l1(o, r, opening))
            s.mouth_frozen.append(masked_l1(frozen, r, opening))
        out_face = faces.find(o)
        if out_face is None:
            log.info("%s: frame %d: dlib finds no face in the output", clip, i)
            m.lost += 1
            continue
        m.scored += 1
        s.akd.append(keypoint_distance(out_face.landmarks, real_face.landmarks))
        if out_face.embedding is not None and real_face.embedding is not None:
            s.aed.append(embedding_distance(out_face.embedding, real_face.embedding))
        if frozen_face is not None:
            s.akd_frozen.append(keypoint_distance(frozen_face.landmarks, real_face.landmarks))
            if frozen_face.embedding is not None and real_face.embedding is not None:
                s.aed_frozen.append(embedding_distance(frozen_face.embedding,
                                                       real_face.embedding))
    m.l1, m.l1_frozen = _mean(s.l1), _mean(s.l1_frozen)
    if s.mse:
        m.psnr, m.psnr_frozen = psnr_db(_mean(s.mse)), psnr_db(_mean(s.mse_frozen))
    m.akd, m.akd_frozen = _mean(s.akd), _mean(s.akd_frozen)
    m.aed, m.aed_frozen = _mean(s.aed), _mean(s.aed_frozen)
    m.mouth_l1, m.mouth_l1_frozen = _mean(s.mouth), _mean(s.mouth_frozen)
    return m, samples


def _frames(path: Path, limit: int | None) -> Iterator[np.ndarray]:
    from live.io.video import VideoReader

    with VideoReader(path) as reader:
        for frame in itertools.islice(reader, limit):
            yield frame.image


def first_frame(path: Path) -> np.ndarray:
    """Frame 0 of a video (RGB uint8)."""
    for image in _frames(path, 1):
        return image
    raise InputError("the video has no frames", path=path, expected="at least one frame")


def rewrite_clip(clip: Path, output: Path, max_frames: int | None) -> int:
    """The clip's own frames (the first ``max_frames``) written to ``output`` by the offline
    job's video writer at its defaults (H.264, CRF 18), as :func:`run_animate
    <live.jobs.animate.run_animate>` writes an engine's frames: what a perfect engine would
    hand the scoring. Returns the number of frames written."""
    from live.io.video import VideoWriter, probe_video

    info = probe_video(clip)
    n = 0
    with VideoWriter(output, fps=info.fps_fraction, size=info.size) as writer:
        for image in _frames(clip, max_frames):
            writer.write(image)
            n += 1
    return n


@dataclass(frozen=True)
class EngineChoice:
    """The engine the jobs animate with and its model (fomm)."""

    name: str = "mesh"
    weights: Path | None = None
    model_dir: Path | None = None
    image_size: int | None = None
    options: Any = None
    """The engines' options (an :class:`~live.engines.base.EngineOptions`, from ``--config``);
    None: the defaults."""


def _animate(portrait: Path, video: Path, output: Path, engine: EngineChoice,
             max_frames: int | None) -> Any:
    from live.jobs.animate import AnimateConfig, run_animate

    config = AnimateConfig(source_image=portrait, driving_video=video, output=output,
                           engine="fomm" if engine.name == "fomm" else "mesh",
                           weights=engine.weights, model_dir=engine.model_dir,
                           image_size=engine.image_size, keep_audio=False,
                           max_frames=max_frames,
                           **({} if engine.options is None
                              else {"engine_options": engine.options}))
    return run_animate(config, progress=False)


def check_engine(engine: EngineChoice) -> None:
    """Raise :class:`WeightsError` (with the reason) when the engine cannot run here."""
    from live.jobs.animate import AnimateConfig, resolve_engine

    resolve_engine(AnimateConfig(source_image=Path("portrait.png"),
                                 driving_video=Path("driving.mp4"), output=Path("out.mp4"),
                                 engine="fomm" if engine.name == "fomm" else "mesh",
                                 weights=engine.weights, model_dir=engine.model_dir,
                                 image_size=engine.image_size))


def reconstruct_clip(clip: Path, *, faces: DlibFaces | None, engine: EngineChoice,
                     work_dir: Path, sheets_dir: Path | None, max_frames: int | None = None,
                     every: int = RECONSTRUCT_EVERY, floor: bool = False) -> ClipMetrics:
    """Self-reconstruction of one clip (frame 0 as the portrait, the clip as the driver);
    ``floor``: also score the clip itself through the job's writer (:attr:`ClipMetrics.floor`)."""
    import cv2

    portrait = work_dir / f"{clip.stem}_frame0.png"
    if not cv2.imwrite(str(portrait), np.ascontiguousarray(first_frame(clip)[:, :, ::-1])):
        raise InputError("cannot write the portrait PNG", path=portrait)
    output = work_dir / f"{clip.stem}_{engine.name}.mp4"
    t0 = time.perf_counter()
    report = _animate(portrait, clip, output, engine, max_frames)
    t1 = time.perf_counter()
    metrics, samples = evaluate_frames(
        _frames(clip, report.frames), _frames(output, report.frames), clip=clip.name,
        faces=faces, every=every, sheet_at=sheet_indices(report.frames))
    if metrics.frames != report.frames:
        log.warning("%s: compared %d frames, the job wrote %d", clip.name, metrics.frames,
                    report.frames)
    metrics.driving_lost = report.lost_frames
    metrics.animate_seconds = round(t1 - t0, 2)
    metrics.eval_seconds = round(time.perf_counter() - t1, 2)
    if sheets_dir is not None and samples:
        path = sheets_dir / f"reconstruct_{engine.name}_{clip.stem}.png"
        metrics.sheet_bytes = write_png(path, contact_sheet(samples))
        metrics.sheet = str(path)
        if metrics.sheet_bytes > SHEET_MAX_BYTES:
            log.warning("%s: contact sheet is %d bytes", path, metrics.sheet_bytes)
    output.unlink(missing_ok=True)
    portrait.unlink(missing_ok=True)
    if floor:
        metrics.floor = clip_floor(clip, work_dir=work_dir, faces=faces,
                                   frames=report.frames, every=every)
    return metrics


def clip_floor(clip: Path, *, work_dir: Path, faces: DlibFaces | None, frames: int,
               every: int = RECONSTRUCT_EVERY) -> dict[str, Any]:
    """The protocol's floor on one clip: its first ``frames`` frames written by the job's
    writer (:func:`rewrite_clip`) scored against the clip as an engine's output is (the
    H.264 round trip, and dlib's own scatter on nearly the same pixels, are all that is
    left). Returns the ratios and the faces lost."""
    rewritten = work_dir / f"{clip.stem}_floor.mp4"
    try:
        n = rewrite_clip(clip, rewritten, frames)
        m, _ = evaluate_frames(_frames(clip, n), _frames(rewritten, n), clip=clip.name,
                               faces=faces, every=every)
    finally:
        rewritten.unlink(missing_ok=True)
    return {"l1_ratio": m.l1_ratio, "psnr_gain_db": m.psnr_gain_db, "akd": m.akd,
            "akd_ratio": m.akd_ratio, "aed_ratio": m.aed_ratio,
            "mouth_l1_ratio": m.mouth_l1_ratio, "lost": m.lost, "real_faces": m.real_faces}


RECONSTRUCT_RATIOS = ("l1_ratio", "psnr_gain_db", "akd_ratio", "aed_ratio", "mouth_l1_ratio")


def reconstruct(clips: Sequence[Path], *, engine: EngineChoice = EngineChoice(),
                sheets_dir: Path | None = None, max_frames: int | None = None,
                every: int = RECONSTRUCT_EVERY, faces: DlibFaces | None = None,
                floor: bool = False, progress: Progress = _quiet) -> dict[str, Any]:
    """Run :func:`reconstruct_clip` on each clip; returns the JSON-ready result (``skipped``
    with the reason when the engine cannot run here). ``floor``: each clip's floor too
    (:func:`clip_floor`) and their medians in the summary (``median_floor_*``)."""
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "job": "reconstruct", "engine": engine.name, "max_frames": max_frames,
        "every": every, "eval_size": EVAL_SIZE,
        "sheets_dir": str(sheets_dir) if sheets_dir is not None else None}
    try:
        check_engine(engine)
    except WeightsError as exc:
        return {**result, "skipped": str(exc), "clips": [], "summary": {}}
    rows: list[ClipMetrics] = []
    with tempfile.TemporaryDirectory(prefix="mimicam-reconstruct-") as tmp:
        for n, clip in enumerate(clips, 1):
            progress(f"[{n}/{len(clips)}] {clip.name}: animating and scoring")
            m = reconstruct_clip(clip, faces=faces, engine=engine, work_dir=Path(tmp),
                                 sheets_dir=sheets_dir, max_frames=max_frames, every=every,
                                 floor=floor)
            progress(f"[{n}/{len(clips)}] {clip.name}: {m.frames} frames, L1 ratio "
                     f"{_fmt(m.l1_ratio, 2)}, AKD ratio {_fmt(m.akd_ratio, 2)}, AED ratio "
                     f"{_fmt(m.aed_ratio, 2)} ({m.animate_seconds:.1f} s animate, "
                     f"{m.eval_seconds:.1f} s scoring)")
            rows.append(m)
    dicts = [r.as_dict() for r in rows]
    result["clips"] = dicts
    result["summary"] = {f"median_{k}": _median(d[k] for d in dicts) for k in RECONSTRUCT_RATIOS}
    result["summary"]["output_face_lost"] = sum(r.lost for r in rows)
    if floor:
        floors = [r.floor for r in rows if r.floor is not None]
        for k in RECONSTRUCT_RATIOS:
            result["summary"][f"median_floor_{k}"] = _median(f[k] for f in floors)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


# --------------------------------------------------------------------------------- identity


@dataclass(frozen=True, eq=False)
class FaceRegion:
    """A square around the face a job animates: centre (image pixels) and side, and the
    face's box in the :data:`EVAL_SIZE` crop (the bounds of its face-mesh landmarks, which
    match dlib's detector boxes within a few per cent of the face size on the fixtures)."""

    center: tuple[float, float]
    side: float
    face_box: tuple[float, float, float, float] | None = None

    def crop(self, image: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray:
        from live.face.tracking import crop_square

        return crop_square(image, np.asarray(self.center), self.side, size).image


def face_region(image: np.ndarray, *, path: Path | None = None) -> FaceRegion:
    """The region of the face ``run_animate`` animates in a picture (its largest face, found
    the same way), :data:`REGION_SCALE` face sizes wide."""
    from live.face.portraits import find_faces
    from live.face.tracking import square_box

    (landmarks,) = find_faces(image, max_faces=1, path=path)
    center, size = square_box(landmarks, scale=1.0)
    side = REGION_SCALE * size
    # the landmarks in crop pixels (as crop_square maps them)
    scale = EVAL_SIZE / side
    pts = (np.asarray(landmarks, np.float64)[:, :2] - center) * scale + (EVAL_SIZE - 1) / 2.0
    return FaceRegion((float(center[0]), float(center[1])), side, landmark_box(pts))


def landmark_box(points: np.ndarray | None) -> tuple[float, float, float, float] | None:
    """``(left, top, right, bottom)`` of face-mesh landmarks (N, 2+), or None."""
    if points is None:
        return None
    pts = np.asarray(points, np.float64)[:, :2]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def region_features(faces: DlibFaces, crop: np.ndarray,
                    fallback_box: Sequence[float] | None) -> FaceFeatures | None:
    """dlib's face nearest the centre of a face-region crop. When the detector (upsampling
    once) finds none it tries again upsampling twice (it misses some painted faces at one
    scale and finds them at the next); when that finds none either, the face is measured in
    ``fallback_box``, the bounds of the face's face-mesh landmarks (``detected=False``):
    dlib's HOG detector misses some faces outright (a grimace with glasses), its landmark
    and embedding models do not."""
    h, w = crop.shape[:2]
    near = (w / 2.0, h / 2.0)
    found = faces.find(crop, near=near)
    if found is None:
        found = faces.find(crop, near=near, upsample=faces.upsample + 1,
                           fallback_box=fallback_box)
    return found


@dataclass(frozen=True, eq=False)
class _Picture:
    """A portrait or driver frame 0: where its face is and dlib's embedding of it."""

    name: str
    region: FaceRegion
    embedding: np.ndarray | None
    detected: bool = True


@dataclass
class PairMetrics:
    """One portrait x driving clip of the identity job."""

    portrait: str
    clip: str
    frames: int = 0
    sampled: int = 0
    found: int = 0
    """Sampled output frames where dlib's detector found a face in the face region."""
    boxed: int = 0
    """Sampled output frames measured in the portrait's face-mesh box (detector found none)."""
    to_portrait: float = math.nan
    """Median embedding distance of the output's face to the portrait's."""
    to_driver: float = math.nan
    """Median embedding distance of the output's face to the driver's (its frame 0)."""
    portrait_driver: float = math.nan
    """Embedding distance portrait to driver."""
    transfer_ratio: float = math.nan
    """Motion transfer of :class:`live.bench.fidelity.FidelityMeter` (0 perfect, 1 frozen)."""
    mesh_lost: int = 0
    """Output frames where the face mesh found no face (transfer_ratio)."""
    transfer_floor: float = math.nan
    """``transfer_ratio`` of a perfect engine on this clip (:func:`transfer_floor`)."""
    transfer_warp: float = math.nan
    """``transfer_ratio`` of a perfect warp of this portrait by this clip
    (:func:`transfer_warp`)."""
    seconds: float = 0.0
    note: str = ""

    @property
    def driver_ratio(self) -> float:
        return ratio(self.to_driver, self.portrait_driver)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "driver_ratio": self.driver_ratio}


def _track_driving(path: Path, max_frames: int | None) -> list[np.ndarray | None]:
    """Driving landmarks per frame in frame pixels (``FaceTracker``, as the fidelity bench)."""
    from live.engines.mesh.engine import driving_points
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    out: list[np.ndarray | None] = []
    with FaceTracker(crop_size=256) as tracker, VideoReader(path) as reader:
        for frame in itertools.islice(reader, max_frames):
            face = tracker.process(frame).face
            out.append(None if face is None or face.landmarks is None
                       else driving_points(face, face.landmarks))
    return out


def transfer_floor(frames: Iterable[np.ndarray], region: FaceRegion,
                   driving_track: Sequence[np.ndarray | None]) -> float:
    """``transfer_ratio`` of a perfect engine: ``frames`` (a clip's own frames, as the job's
    writer gives them back: :func:`rewrite_clip`) cut to ``region`` (its frame 0's face) and
    scored as :func:`identity_pair` scores an output, against the clip's ``driving_track``.
    What is left is the meter's own scatter (still-image face mesh on the output, the video
    tracker on the driver) on that clip's motion."""
    from live.bench.fidelity import FidelityMeter

    with FidelityMeter() as meter:
        for i, image in enumerate(frames):
            meter.add(region.crop(image), driving_track[i] if i < len(driving_track) else None)
    return meter.result.transfer_ratio


WARP_SIZE = 2 * EVAL_SIZE
"""Side the perfect warp (:func:`transfer_warp`) moves a portrait's face region at; it is
scored at :data:`EVAL_SIZE`, as an engine's output is."""


def transfer_warp(image: np.ndarray, region: FaceRegion,
                  driving_track: Sequence[np.ndarray | None], *, fps: float | Fraction,
                  work_dir: Path) -> float:
    """``transfer_ratio`` of a perfect warp of the portrait ``image``: its face ``region`` with
    its pixels moved (:func:`~live.bench.fidelity.landmark_warp`) so that its face-mesh
    landmarks, as read on that region, land exactly where the meter expects them for each
    driving frame (:func:`~live.bench.fidelity.expected_points`), written by the job's video
    writer and scored as :func:`identity_pair` scores an engine's output. What is left is the
    meter's own scatter on this portrait moved as driven: about the best an engine that
    moves the portrait's own pixels can score. NaN when no face is read in the region or
    the clip has none."""
    import cv2

    from live.bench.fidelity import FidelityMeter, expected_points, landmark_warp
    from live.face.tracking import face_landmarks
    from live.geometry import crop_square
    from live.io.video import VideoWriter

    face = crop_square(image, np.asarray(region.center), region.side, WARP_SIZE).image
    read = face_landmarks(face, refine=True)
    first = next((d for d in driving_track if d is not None), None)
    if read is None or first is None:
        return math.nan
    path = work_dir / "perfect_warp.mp4"
    with VideoWriter(path, fps=fps, size=(WARP_SIZE, WARP_SIZE)) as writer:
        for d in driving_track:
            if d is None:
                writer.write(face)
                continue
            dst = expected_points(read, first, d)
            writer.write(landmark_warp(face, read[:len(dst)], dst))
    with FidelityMeter() as meter:
        for i, frame in enumerate(_frames(path, len(driving_track))):
            meter.add(cv2.resize(frame, (EVAL_SIZE, EVAL_SIZE), interpolation=cv2.INTER_AREA),
                      driving_track[i])
    path.unlink(missing_ok=True)
    return meter.result.transfer_ratio


def identity_pair(portrait_path: Path, portrait: _Picture, clip: Path, driver: _Picture,
                  driving_track: Sequence[np.ndarray | None], *, faces: DlibFaces,
                  engine: EngineChoice, work_dir: Path, max_frames: int | None,
                  every: int = IDENTITY_EVERY) -> PairMetrics:
    """Animate one portrait with one clip and score the output's identity and motion."""
    from live.bench.fidelity import FidelityMeter

    t0 = time.perf_counter()
    m = PairMetrics(portrait.name, clip.name)
    if portrait.embedding is not None and driver.embedding is not None:
        m.portrait_driver = embedding_distance(portrait.embedding, driver.embedding)
    output = work_dir / f"{portrait_path.stem}__{clip.stem}.mp4"
    report = _animate(portrait_path, clip, output, engine, max_frames)
    to_portrait: list[float] = []
    to_driver: list[float] = []
    with FidelityMeter() as meter:
        for i, image in enumerate(_frames(output, report.frames)):
            crop = portrait.region.crop(image)
            # the face mesh on the output crop (transfer_ratio); its box is where dlib
            # measures the face when its detector misses it
            mesh = meter.add(crop, driving_track[i] if i < len(driving_track) else None)
            if i % every:
                continue
            m.sampled += 1
            face = region_features(faces, crop, landmark_box(mesh) or portrait.region.face_box)
            if face is None or face.embedding is None:
                continue
            if face.detected:
                m.found += 1
            else:
                m.boxed += 1
            emb = face.embedding
            if portrait.embedding is not None:
                to_portrait.append(embedding_distance(emb, portrait.embedding))
            if driver.embedding is not None:
                to_driver.append(embedding_distance(emb, driver.embedding))
    output.unlink(missing_ok=True)
    m.frames = meter.result.frames
    m.transfer_ratio = meter.result.transfer_ratio
    m.mesh_lost = meter.result.lost
    m.to_portrait, m.to_driver = _median(to_portrait), _median(to_driver)
    notes = []
    for pic, what in ((portrait, "portrait"), (driver, "driver")):
        if pic.embedding is None:
            notes.append(f"no dlib face in the {what}")
        elif not pic.detected:
            notes.append(f"{what} boxed")
    m.note = "; ".join(notes)
    m.seconds = round(time.perf_counter() - t0, 2)
    return m


def _picture(name: str, image: np.ndarray, faces: DlibFaces, path: Path) -> _Picture:
    region = face_region(image, path=path)
    face = region_features(faces, region.crop(image), region.face_box)
    if face is None:
        return _Picture(name, region, None, False)
    return _Picture(name, region, face.embedding, face.detected)


def identity(portraits: Sequence[Path], clips: Sequence[Path], *, faces: DlibFaces,
             engine: EngineChoice = EngineChoice(), max_frames: int | None = IDENTITY_MAX_FRAMES,
             every: int = IDENTITY_EVERY, progress: Progress = _quiet) -> dict[str, Any]:
    """Every portrait x every clip through the offline job; returns the JSON-ready result."""
    from live.face.portraits import load_image
    from live.io.video import probe_video

    t0 = time.perf_counter()
    result: dict[str, Any] = {"job": "identity", "engine": engine.name,
                              "max_frames": max_frames, "every": every,
                              "region_scale": REGION_SCALE, "eval_size": EVAL_SIZE}
    try:
        check_engine(engine)
    except WeightsError as exc:
        return {**result, "skipped": str(exc), "pairs": [], "summary": {}}
    progress(f"finding the faces of {len(portraits)} portraits")
    images = {p: load_image(p) for p in portraits}
    pictures = {p: _picture(p.name, images[p], faces, p) for p in portraits}
    rows: list[PairMetrics] = []
    floors: list[dict[str, Any]] = []
    total = len(portraits) * len(clips)
    with tempfile.TemporaryDirectory(prefix="mimicam-identity-") as tmp:
        for clip in clips:
            driver = _picture(clip.name, first_frame(clip), faces, clip)
            track = _track_driving(clip, max_frames)
            fps = probe_video(clip).fps_fraction
            rewritten = Path(tmp) / f"{clip.stem}_floor.mp4"
            n = rewrite_clip(clip, rewritten, max_frames)
            floor = transfer_floor(_frames(rewritten, n), driver.region, track)
            rewritten.unlink(missing_ok=True)
            floors.append({"clip": clip.name, "transfer_ratio": floor})
            progress(f"{clip.name}: transfer_ratio of the clip itself {_fmt(floor, 3)}")
            for p in portraits:
                m = identity_pair(p, pictures[p], clip, driver, track, faces=faces,
                                  engine=engine, work_dir=Path(tmp), max_frames=max_frames,
                                  every=every)
                m.transfer_floor = floor
                m.transfer_warp = transfer_warp(images[p], pictures[p].region, track,
                                                fps=fps, work_dir=Path(tmp))
                rows.append(m)
                progress(f"[{len(rows)}/{total}] {p.name} x {clip.name}: to portrait "
                         f"{_fmt(m.to_portrait, 3)}, driver ratio {_fmt(m.driver_ratio, 2)}, "
                         f"transfer {_fmt(m.transfer_ratio, 2)}, perfect warp "
                         f"{_fmt(m.transfer_warp, 2)} ({m.seconds:.1f} s)")
    dicts = [r.as_dict() for r in rows]
    ratios = [r.driver_ratio for r in rows if math.isfinite(r.driver_ratio)]
    result["pairs"] = dicts
    result["floors"] = floors
    transfers = [r.transfer_ratio for r in rows if math.isfinite(r.transfer_ratio)]
    result["summary"] = {
        "pairs": len(rows),
        "median_to_portrait": _median(r.to_portrait for r in rows),
        "max_to_portrait": max((r.to_portrait for r in rows if math.isfinite(r.to_portrait)),
                               default=math.nan),
        "min_driver_ratio": min(ratios, default=math.nan),
        "median_driver_ratio": _median(ratios),
        "median_transfer_ratio": _median(transfers),
        "max_transfer_ratio": max(transfers, default=math.nan),
        "median_transfer_floor": _median(f["transfer_ratio"] for f in floors),
        "max_transfer_floor": max((f["transfer_ratio"] for f in floors
                                   if math.isfinite(f["transfer_ratio"])), default=math.nan),
        "median_transfer_warp": _median(r.transfer_warp for r in rows),
        "max_transfer_warp": max((r.transfer_warp for r in rows
                                  if math.isfinite(r.transfer_warp)), default=math.nan),
        "target_median_to_portrait": TARGET_PORTRAIT_DISTANCE,
        "target_min_driver_ratio": TARGET_DRIVER_RATIO,
        "target_median_transfer_ratio": TARGET_TRANSFER_MEDIAN,
        "target_max_transfer_ratio": TARGET_TRANSFER_WORST,
    }
    s = result["summary"]
    s["meets_targets"] = bool(s["median_to_portrait"] <= TARGET_PORTRAIT_DISTANCE
                              and s["min_driver_ratio"] >= TARGET_DRIVER_RATIO)
    s["meets_transfer_targets"] = bool(s["median_transfer_ratio"] < TARGET_TRANSFER_MEDIAN
                                       and s["max_transfer_ratio"] <= TARGET_TRANSFER_WORST)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


# ------------------------------------------------------------------------------- reporting


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def format_reconstruct(result: dict[str, Any]) -> str:
    """The reconstruct job's markdown table and medians."""
    head = f"self-reconstruction, engine {result['engine']}"
    if result.get("skipped"):
        return f"{head}: skipped: {result['skipped']}"
    lines = [f"{head} ({result['eval_size']} px; AKD/AED on one frame in {result['every']})",
             "",
             "| clip | frames | L1 | L1 frozen | L1 ratio | PSNR dB | PSNR frozen | AKD px "
             "| AKD frozen | AKD ratio | AED | AED frozen | AED ratio | mouth L1 (frames) "
             "| mouth L1 ratio | output face lost |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in result["clips"]:
        lines.append(
            f"| {c['clip']} | {c['frames']} | {_fmt(c['l1'])} | {_fmt(c['l1_frozen'])} "
            f"| {_fmt(c['l1_ratio'], 2)} | {_fmt(c['psnr'], 2)} | {_fmt(c['psnr_frozen'], 2)} "
            f"| {_fmt(c['akd'], 2)} | {_fmt(c['akd_frozen'], 2)} | {_fmt(c['akd_ratio'], 2)} "
            f"| {_fmt(c['aed'])} | {_fmt(c['aed_frozen'])} | {_fmt(c['aed_ratio'], 2)} "
            f"| {_fmt(c['mouth_l1'])} ({c['mouth_frames']}) | {_fmt(c['mouth_l1_ratio'], 2)} "
            f"| {c['lost']} of {c['real_faces']} |")
    s = result["summary"]
    lines += ["", f"medians over clips: L1 ratio {_fmt(s['median_l1_ratio'], 2)}, PSNR gain "
              f"{_fmt(s['median_psnr_gain_db'], 2)} dB, AKD ratio {_fmt(s['median_akd_ratio'], 2)}"
              f", AED ratio {_fmt(s['median_aed_ratio'], 2)}, mouth L1 ratio "
              f"{_fmt(s['median_mouth_l1_ratio'], 2)}; output face lost in "
              f"{s['output_face_lost']} evaluated frames"]
    floors = [(c["clip"], c["floor"]) for c in result["clips"] if c.get("floor")]
    if floors:
        lines += ["", "floor: each clip itself through the job's writer (a perfect engine)", "",
                  "| clip | L1 ratio | PSNR gain dB | AKD px | AKD ratio | AED ratio "
                  "| face lost |", "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {_fmt(f['l1_ratio'], 2)} | {_fmt(f['psnr_gain_db'], 2)} "
                  f"| {_fmt(f['akd'], 2)} | {_fmt(f['akd_ratio'], 3)} "
                  f"| {_fmt(f['aed_ratio'], 2)} | {f['lost']} of {f['real_faces']} |"
                  for name, f in floors]
        lines += ["", f"floor medians: L1 ratio {_fmt(s['median_floor_l1_ratio'], 2)}, PSNR "
                  f"gain {_fmt(s['median_floor_psnr_gain_db'], 2)} dB, AKD ratio "
                  f"{_fmt(s['median_floor_akd_ratio'], 3)}, AED ratio "
                  f"{_fmt(s['median_floor_aed_ratio'], 2)}"]
    if result.get("sheets_dir"):
        lines.append(f"contact sheets: {result['sheets_dir']}")
    lines.append(f"{result['seconds']:.1f} s")
    return "\n".join(lines)


def format_identity(result: dict[str, Any]) -> str:
    """The identity job's markdown table and summary."""
    head = f"identity, engine {result['engine']}"
    if result.get("skipped"):
        return f"{head}: skipped: {result['skipped']}"
    lines = [f"{head} (first {result['max_frames']} frames; dlib on one frame in "
             f"{result['every']})",
             "", "| portrait | clip | d(out, portrait) | d(out, driver) | d(portrait, driver) "
             "| driver ratio | transfer_ratio | clip's own | perfect warp | dlib faces found |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in result["pairs"]:
        note = f" ({p['note']})" if p["note"] else ""
        boxed = f" (+{p['boxed']} boxed)" if p["boxed"] else ""
        lines.append(
            f"| {p['portrait']} | {p['clip']} | {_fmt(p['to_portrait'])} "
            f"| {_fmt(p['to_driver'])} | {_fmt(p['portrait_driver'])} "
            f"| {_fmt(p['driver_ratio'], 2)} | {_fmt(p['transfer_ratio'], 3)} "
            f"| {_fmt(p['transfer_floor'], 3)} | {_fmt(p.get('transfer_warp'), 3)} "
            f"| {p['found']}/{p['sampled']}{boxed}{note} |")
    s = result["summary"]
    lines += ["", f"median d(out, portrait) {_fmt(s['median_to_portrait'])} (target <= "
              f"{TARGET_PORTRAIT_DISTANCE}), worst {_fmt(s['max_to_portrait'])}; min driver "
              f"ratio {_fmt(s['min_driver_ratio'], 2)} (target >= {TARGET_DRIVER_RATIO}), "
              f"median {_fmt(s['median_driver_ratio'], 2)}; "
              f"{'meets' if s['meets_targets'] else 'misses'} the identity targets",
              f"transfer_ratio median {_fmt(s['median_transfer_ratio'])} (target < "
              f"{TARGET_TRANSFER_MEDIAN}), worst {_fmt(s['max_transfer_ratio'])} (target <= "
              f"{TARGET_TRANSFER_WORST}): {'meets' if s['meets_transfer_targets'] else 'misses'}"
              f" them; a perfect engine (each clip's own frames, \"clip's own\"): median "
              f"{_fmt(s['median_transfer_floor'])}, worst {_fmt(s['max_transfer_floor'])} "
              "over the clips; a perfect warp of each portrait (\"perfect warp\"): median "
              f"{_fmt(s.get('median_transfer_warp'))}, worst "
              f"{_fmt(s.get('max_transfer_warp'))} over the pairs",
              f"{result['seconds']:.1f} s"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ CLI


def _pick(folder: Path, names: str | None, what: str, flag: str) -> list[Path]:
    """Files of ``folder`` (all, sorted) or those named in a comma-separated list (file names,
    stems, or paths)."""
    suffixes = bench_common.VIDEO_SUFFIXES if what == "driving" else bench_common.IMAGE_SUFFIXES
    available = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) \
        if folder.is_dir() else []
    if names is None:
        if not available:
            raise InputError(f"no {what} files found", path=folder,
                             expected=f"the team's shared fixtures, or {flag} PATH,...")
        return available
    picked = []
    for name in bench_common.split_list(names):
        path = Path(name)
        match = [p for p in available if name in (p.name, p.stem)]
        if match:
            picked.append(match[0])
        elif path.is_file():
            picked.append(path)
        else:
            raise InputError(f"unknown {what} file {name!r}",
                             expected="one of " + ", ".join(p.name for p in available)
                             + " or a file path", got=name)
    return picked


def add_arguments(parser: Any) -> None:
    """Options of the reconstruct and identity jobs (flags the parser has are kept)."""
    parser.add_argument("--clips", default=None, metavar="A,B",
                        help="reconstruct/identity: driving clips (names in "
                        "../shared/fixtures/driving or paths; default: all)")
    parser.add_argument("--portraits", default=None, metavar="A,B",
                        help="identity: portraits (names in ../shared/fixtures/portraits or "
                        "paths; default: all)")
    parser.add_argument("--every", type=int, default=None, metavar="N",
                        help="reconstruct/identity: dlib scores every N-th frame "
                        f"(default: {RECONSTRUCT_EVERY} / {IDENTITY_EVERY})")
    parser.add_argument("--sheets", type=Path, default=None, metavar="DIR",
                        help="reconstruct: folder for the contact sheets (default: a new "
                        "temporary folder, named in the report)")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="only the first N frames (reconstruct default: all; identity: "
                        f"{IDENTITY_MAX_FRAMES})")
    parser.add_argument("--weights", type=Path, default=None, help="FOMM checkpoint")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="FOMM model directory from 'mimicam export'")
    parser.add_argument("--floor", action="store_true",
                        help="reconstruct: also score each clip itself through the job's "
                             "video writer (what a perfect engine would score)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--engine-config", type=Path, default=None, metavar="TOML",
                        help="a settings file whose [engine.mesh] / [engine.fomm] tables "
                             "set the engine's options (ablations)")


_UNREAD = (("--driving", "driving", None), ("--portrait", "portrait", None),
           ("--warmup", "warmup", None), ("--size", "size", 512),
           ("--background", "background", None))
"""Options of ``mimicam bench`` the reconstruct and identity jobs do not read, with the value
that means "not given"."""


def _refuse_unread(args: argparse.Namespace) -> None:
    """InputError naming the shared bench options given to these jobs, which would have been
    ignored (``--driving x.mp4`` ran every fixture clip for minutes)."""
    given = [flag for flag, name, unset in _UNREAD if getattr(args, name, unset) != unset]
    if given:
        raise InputError(f"mimicam bench --job {args.job} does not read "
                         + ", ".join(given),
                         expected="--clips A,B (driving clips), --portraits A,B (identity), "
                         "--max-frames N",
                         got=" ".join(given))


def run(args: argparse.Namespace) -> int:
    """Handler of ``mimicam bench --job reconstruct|identity``: prints progress on stderr and
    the table (or JSON) on stdout."""
    job = args.job
    if job not in ("reconstruct", "identity"):
        raise MimicamError(f"live.bench.reconstruct runs the reconstruct and identity jobs, "
                           f"not {job!r}")
    _refuse_unread(args)
    every = args.every or (RECONSTRUCT_EVERY if job == "reconstruct" else IDENTITY_EVERY)
    if every < 1:
        raise InputError("--every out of range", expected=">= 1", got=str(every))
    engine = EngineChoice(args.engine or "mesh", getattr(args, "weights", None),
                          getattr(args, "model_dir", None) or getattr(args, "model", None),
                          getattr(args, "image_size", None))
    config_path = getattr(args, "engine_config", None)
    if config_path is not None:
        engine = dataclasses.replace(engine, options=load_engine_options(config_path))
    faces = DlibFaces()  # fails first, with the install hint, when dlib is missing
    clips = _pick(DRIVING_DIR, getattr(args, "clips", None), "driving", "--clips")

    def progress(message: str) -> None:
        print(f"bench {job}: {message}", file=sys.stderr, flush=True)

    if job == "reconstruct":
        sheets = args.sheets
        if sheets is None:
            sheets = Path(tempfile.mkdtemp(prefix="mimicam-reconstruct-sheets-"))
        sheets.mkdir(parents=True, exist_ok=True)
        progress(f"contact sheets go to {sheets}")
        result = reconstruct(clips, engine=engine, sheets_dir=sheets,
                             max_frames=args.max_frames, every=every, faces=faces,
                             floor=bool(getattr(args, "floor", False)), progress=progress)
        text = format_reconstruct(result)
    else:
        portraits = _pick(PORTRAITS_DIR, getattr(args, "portraits", None), "portrait",
                          "--portraits")
        max_frames = args.max_frames if args.max_frames is not None else IDENTITY_MAX_FRAMES
        result = identity(portraits, clips, faces=faces, engine=engine, max_frames=max_frames,
                          every=every, progress=progress)
        text = format_identity(result)
    if args.json:
        print(json.dumps(json_ready(result), indent=1))
    else:
        print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m live.bench.reconstruct --job reconstruct|identity ...``"""

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--job", choices=("reconstruct", "identity"), default="reconstruct")
        parser.add_argument("--engine", choices=("mesh", "fomm"), default="mesh")
        parser.add_argument("--image-size", type=int, choices=(256, 512), default=None)
        add_arguments(parser)

    return bench_common.job_main(argv, prog="python -m live.bench.reconstruct", doc=__doc__,
                                 add_arguments=add, run=run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = [
    "ClipMetrics",
    "DlibFaces",
    "EngineChoice",
    "FaceFeatures",
    "FaceRegion",
    "PairMetrics",
    "add_arguments",
    "contact_sheet",
    "embedding_distance",
    "eval_view",
    "evaluate_frames",
    "face_region",
    "format_identity",
    "format_reconstruct",
    "heat_map",
    "identity",
    "keypoint_distance",
    "l1_distance",
    "main",
    "mean_squared_error",
    "psnr_db",
    "ratio",
    "reconstruct",
    "reconstruct_clip",
    "run",
]
