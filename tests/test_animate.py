"""``mimicam animate``: masks, config, engine choice, multi-face paste-back, the whole job on
real fixtures (frames, fps, audio, held poses, best frame) and its bad-input errors."""

from __future__ import annotations

import dataclasses
import itertools
import re
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from _media import write_wav

from calibrate.errors import InputError, NoFaceError, WeightsError
from live.cli.main import main
from live.io.video import VideoReader, VideoWriter, probe_video
from live.jobs.animate import (
    MESH_MAX_SIZE,
    MESH_MIN_SIZE,
    AnimateConfig,
    CropLayout,
    FacePaster,
    auto_mesh_size,
    box_mask,
    disc_mask,
    face_crop_square,
    find_first_face,
    find_portrait_faces,
    portrait_face,
    resolve_engine,
    run_animate,
)
from live.jobs.demo import load_image

CLIP_FRAMES = 40


# ------------------------------------------------------------------------------ helpers


def decode_all(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return [f.image for f in reader]


def audio_seconds(path: Path) -> float:
    """Decoded length of the first audio stream, in seconds."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
        return samples / stream.codec_context.sample_rate


def cut_clip(src: Path, dst: Path, frames: int, *, blank: range = range(0),
             audio: bool = True) -> Path:
    """The first ``frames`` frames of ``src`` (its audio trimmed alike), frames in ``blank``
    replaced by flat grey (no face)."""
    info = probe_video(src)
    with VideoReader(src) as reader, VideoWriter(
            dst, fps=info.fps_fraction, size=info.size,
            audio_from=src if audio and info.has_audio else None, preset="veryfast") as w:
        for frame in itertools.islice(reader, frames):
            image = frame.image
            if frame.index in blank:
                image = np.full_like(image, 128)
            w.write(image)
    return dst


def folder_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture(scope="session")
def talking_clip(tmp_path_factory: pytest.TempPathFactory, driving_dir: Path) -> Path:
    """40 frames (1.6 s, 25 fps, 512x512) of the talking girl, with her (audible) audio."""
    folder = tmp_path_factory.mktemp("animate_clips")
    return cut_clip(driving_dir / "lp_d11.mp4", folder / "talk40.mp4", CLIP_FRAMES)


@pytest.fixture(scope="session")
def portrait(portraits_dir: Path) -> Path:
    return portraits_dir / "lp_s42.jpg"


@pytest.fixture(scope="session")
def painting(portraits_dir: Path) -> Path:
    return portraits_dir / "multi_pg_fom_multi_person.jpg"


# --------------------------------------------------------------------------------- masks


def test_disc_mask_is_one_inside_and_zero_at_its_radius() -> None:
    m = disc_mask(200, (90.0, 110.0), 60.0)
    assert m.dtype == np.float32 and m.shape == (200, 200)
    assert m[110, 90] == pytest.approx(1.0, abs=1e-3)
    assert m[110, 90 + 35] > 0.95  # well inside the core
    assert m[110, 90 + 62] < 0.02  # at the radius it has faded out
    assert m[110, 199] == 0.0 and m[0, 0] == 0.0
    # monotonic from the centre outwards
    row = m[110, 90:200]
    assert np.all(np.diff(row) <= 1e-6)


def test_box_mask_fades_to_zero_at_every_edge() -> None:
    m = box_mask(100, feather=0.1)
    assert m[50, 50] == 1.0
    assert m[:, 10:90][10:90].min() == 1.0  # flat inside the band
    for edge in (m[0], m[-1], m[:, 0], m[:, -1]):
        assert edge.max() < 0.03
    assert np.allclose(m, m.T) and np.allclose(m, m[::-1])


# ---------------------------------------------------------------------- best frame, encoder


def test_best_frame_search_streams_to_the_closest_pose() -> None:
    from calibrate.best_frame import BestFrameSearch
    from calibrate.neutral import best_matching_frame

    rng = np.random.default_rng(7)
    portrait = rng.normal(0, 50, (478, 3)) + 200
    noise = [3.0, None, 1.0, 0.2, 2.0, None, 0.5]
    frames: list[np.ndarray | None] = []
    for i, amp in enumerate(noise):
        if amp is None:
            frames.append(None)
            continue
        a = 0.1 * i
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * (1 + 0.1 * i)
        pts = portrait.copy()
        pts[:, :2] = portrait[:, :2] @ rot.T + 30 * i  # moved, turned, scaled: no distance
        pts[:, :2] += np.random.default_rng(100).normal(0, amp, (478, 2))
        frames.append(pts)
    search = BestFrameSearch(portrait)
    assert search.best is None
    for i, lm in enumerate(frames):
        search.update(i, lm, item=f"crop{i}")
    assert search.best is not None
    assert search.best.index == 3 == best_matching_frame(portrait, frames)
    assert search.best.item == "crop3"
    assert search.frames == 7 and search.frames_with_face == 5
    # several portrait faces: the mean distance decides
    two = BestFrameSearch([portrait, frames[4]])
    for i, lm in enumerate(frames):
        two.update(i, lm)
    assert two.best is not None and two.best.index == 4
    with pytest.raises(ValueError, match="portrait_landmarks"):
        BestFrameSearch([np.zeros((478, 3))])


def test_encoder_thread_reports_a_write_error_and_drains() -> None:
    from live.jobs.animate import _Encoder

    class Failing:
        def __init__(self) -> None:
            self.written = 0

        def write(self, image: np.ndarray) -> None:
            if self.written == 2:
                raise OSError("disk full")
            self.written += 1

    writer = Failing()
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(OSError, match="disk full"), _Encoder(writer, max_queue=2) as enc:
        for _ in range(50):  # never blocks, even though the writer stopped taking frames
            enc.write(frame)
    assert writer.written == 2
    ok = Failing()
    with _Encoder(ok) as enc:
        enc.write(frame)
        enc.write(frame)
    assert ok.written == 2  # everything queued is written before exit returns


# -------------------------------------------------------------------------------- config


def test_config_validates_ratio_and_options(tmp_path: Path) -> None:
    paths = {"source_image": tmp_path / "a.png", "driving_video": tmp_path / "b.mp4",
             "output": tmp_path / "c.mp4"}
    assert AnimateConfig(**paths).ratio == 0.4
    for ratio in (0.5, 0.2, 1.0):
        assert AnimateConfig(**paths, ratio=ratio).ratio == ratio
    for ratio in (0.1, 1.01, -0.4, float("nan")):
        with pytest.raises(InputError, match=r"ratio is out of range.*got"):
            AnimateConfig(**paths, ratio=ratio)
    with pytest.raises(InputError, match="image-size"):
        AnimateConfig(**paths, image_size=300)
    with pytest.raises(InputError, match="best-frame needs relative"):
        AnimateConfig(**paths, best_frame=True, relative=False)
    with pytest.raises(InputError, match="conflicting audio"):
        AnimateConfig(**paths, audio=tmp_path / "x.wav", keep_audio=False)
    with pytest.raises(InputError, match="unknown engine"):
        AnimateConfig(**paths, engine="magic")  # type: ignore[arg-type]
    assert AnimateConfig(**paths).max_size == 1920 and not AnimateConfig(**paths).overwrite
    for size in (0, 64, 4096):
        assert AnimateConfig(**paths, max_size=size).max_size == size
    for size in (-1, 10, 63):
        with pytest.raises(InputError, match="max-size out of range"):
            AnimateConfig(**paths, max_size=size)


def test_engine_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import model_export.weights as weights

    monkeypatch.setattr(weights, "find_weights", lambda *a, **k: None)
    paths = {"source_image": tmp_path / "a.png", "driving_video": tmp_path / "b.mp4",
             "output": tmp_path / "c.mp4"}
    assert resolve_engine(AnimateConfig(**paths)).name == "mesh"  # auto, no weights
    spec = resolve_engine(AnimateConfig(**paths, engine="mesh", image_size=256,
                                        adapt_scale=False))
    assert spec.options == {"size": 256, "adapt_scale": False}
    with pytest.raises(WeightsError, match="fomm engine needs weights"):
        resolve_engine(AnimateConfig(**paths, engine="fomm"))
    with pytest.raises(WeightsError, match="not found"):
        resolve_engine(AnimateConfig(**paths, engine="fomm", weights=tmp_path / "no.pdparams"))
    with pytest.raises(InputError, match="absolute motion needs the fomm engine"):
        resolve_engine(AnimateConfig(**paths, engine="mesh", relative=False))
    ckpt = tmp_path / "vox.pdparams"
    ckpt.write_bytes(b"x")
    spec = resolve_engine(AnimateConfig(**paths, weights=ckpt, relative=False))
    assert spec.name == "fomm"  # auto with weights
    assert spec.options["weights"] == ckpt and spec.options["relative"] is False


# ------------------------------------------------------------------------- multi-face paste


@pytest.mark.fixtures
def test_each_face_is_pasted_only_into_its_own_region(painting: Path) -> None:
    image = load_image(painting)
    layout = CropLayout(multi_face=True, ratio=0.4)
    landmarks = find_portrait_faces(image, multi_face=True)
    assert len(landmarks) >= 4  # the Syndics: five or six faces, small, in one painting
    faces = [portrait_face(image, lm, 256, layout) for lm in landmarks]
    paster = FacePaster(image, faces, color_transfer=False)
    still = paster.process([f.crop.image for f in faces]).copy()
    # pasting the crops unchanged gives the picture back (up to resampling)
    assert np.abs(still.astype(int) - image).mean() < 0.5
    h, w = image.shape[:2]
    for k in range(len(faces)):
        crops = [f.crop.image for f in faces]
        crops[k] = 255 - crops[k]  # change only face k
        out = paster.process(crops).astype(int)
        changed = np.abs(out - still).max(axis=2) > 0
        # where face k's mask lands in the picture
        alpha = cv2.warpAffine(faces[k].mask, faces[k].crop.crop_to_frame, (w, h),
                               flags=cv2.INTER_LINEAR)
        assert changed[alpha > 0.5].all()
        assert not changed[alpha == 0].any()
        # the region is around face k's own landmarks and smaller than its crop
        ys, xs = np.nonzero(changed)
        cx, cy = landmarks[k][:, 0].mean(), landmarks[k][:, 1].mean()
        assert abs(xs.mean() - cx) < faces[k].face_size * 0.3
        assert abs(ys.mean() - cy) < faces[k].face_size * 0.3
        assert changed.sum() < (faces[k].face_size * 2.0) ** 2


@pytest.mark.fixtures
def test_larger_ratio_pastes_more(painting: Path) -> None:
    image = load_image(painting)
    lm = find_portrait_faces(image, multi_face=True)[0]
    areas = []
    for ratio in (0.3, 0.4, 0.5, 0.8):
        face = portrait_face(image, lm, 256, CropLayout(multi_face=True, ratio=ratio))
        scale = float(np.sqrt(abs(np.linalg.det(face.crop.crop_to_frame[:, :2]))))
        areas.append(float(face.mask.sum()) * scale ** 2)
        # the mask always fades out inside its crop: no box edge
        border = np.concatenate([face.mask[0], face.mask[-1], face.mask[:, 0],
                                 face.mask[:, -1]])
        assert border.max() < 0.02
    assert areas == sorted(areas) and areas[-1] > 3 * areas[0]


# ------------------------------------------------------------------ the mesh engine's crop


def _face_points(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """478 landmark-like points spread over a face box (frame pixels)."""
    rng = np.random.default_rng(3)
    pts = np.zeros((478, 3))
    pts[:, 0] = rng.uniform(x0, x1, 478)
    pts[:, 1] = rng.uniform(y0, y1, 478)
    return pts


def test_the_mesh_crop_is_the_picture_pixel_for_pixel() -> None:
    # the size chosen for the mesh engine is the face crop's own side, cut on whole pixels:
    # the crop is an exact copy of the picture and an unchanged crop pastes back onto the
    # same pixels (a 600 px face crop was cut at 512 px and blurred on its way in and out)
    image = np.random.default_rng(0).integers(0, 256, (900, 700, 3), np.uint8)
    points = _face_points(301.3, 333.7, 517.8, 561.2)  # off the pixel grid
    layout = CropLayout(whole_pixels=True)
    size = auto_mesh_size([points], layout)
    _, side = face_crop_square(points, layout)
    assert size == side == round(face_crop_square(points, CropLayout())[1])
    face = portrait_face(image, points, size, layout)
    m = face.crop.crop_to_frame
    assert m[0, 0] == m[1, 1] == 1.0 and m[0, 1] == m[1, 0] == 0.0
    x0, y0 = int(m[0, 2]), int(m[1, 2])
    assert (x0, y0) == (m[0, 2], m[1, 2]) and x0 >= 0 and x0 + size <= 700
    assert np.array_equal(face.crop.image, image[y0:y0 + size, x0:x0 + size])
    out = FacePaster(image, [face], color_transfer=False).process([face.crop.image])
    assert np.array_equal(out, image)
    # without whole pixels the same square resamples the picture
    loose = portrait_face(image, points, size, CropLayout())
    out = FacePaster(image, [loose], color_transfer=False).process([loose.crop.image])
    assert np.abs(out.astype(int) - image).max() > 20


def test_the_mesh_crop_size_is_bounded() -> None:
    layout = CropLayout(whole_pixels=True)
    tiny = _face_points(100, 100, 160, 170)  # a ~130 px crop: enlarged
    assert auto_mesh_size([tiny], layout) == MESH_MIN_SIZE
    huge = _face_points(0, 0, 1800, 1900)  # a ~3800 px crop: reduced
    assert auto_mesh_size([huge], layout) == MESH_MAX_SIZE
    # several faces: the largest face's crop
    assert auto_mesh_size([tiny, _face_points(0, 0, 300, 320)], layout) == round(
        face_crop_square(_face_points(0, 0, 300, 320), layout)[1])


@pytest.mark.fixtures
def test_tight_face_crops_get_the_whole_pictures_view_of_the_person(
        portraits_dir: Path, painting: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # animate's face crops (--crop-scale, several faces) are segmented with the whole
    # picture's mask cut into them, as mimicam live's are (benchmarks/README "Round 56"):
    # sadtalker_art_14 at 1.8 face sizes shows the selfie model next to no background, and
    # the red wall beside her neck was in the mesh engine's head layer
    import live.face.segmentation as segmentation
    from live.engines.mesh.engine import MeshEngine
    from live.jobs.animate import FaceAnimator, whole_picture_layout, with_person_context

    calls: list[tuple[int, ...]] = []
    real = segmentation.segment_person

    def counting(image: np.ndarray) -> np.ndarray | None:
        calls.append(image.shape)
        return real(image)

    monkeypatch.setattr(segmentation, "segment_person", counting)
    group = load_image(painting)
    landmarks = find_portrait_faces(group, multi_face=True)
    faces = with_person_context(group, [portrait_face(group, lm, 256, CropLayout(
        multi_face=True)) for lm in landmarks])
    assert calls == [group.shape]  # the picture segmented once for all its faces
    for face in faces:
        assert face.context is not None and face.context.shape == (256, 256)
        assert face.context.dtype == np.float32
    # a crop that shows all the picture needs none, and nothing is segmented for it
    image = load_image(portraits_dir / "sadtalker_art_14.png")
    (lm,) = find_portrait_faces(image, multi_face=False)
    whole = whole_picture_layout(CropLayout(whole_pixels=True), [lm],
                                 (image.shape[1], image.shape[0]))
    assert whole.picture is not None
    calls.clear()
    (face,) = with_person_context(image, [portrait_face(image, lm, 512, whole)])
    assert face.context is None and calls == []
    # the tight crop: the engine gets the context, and the wall is out of its head layer
    (face,) = with_person_context(image, [portrait_face(image, lm, 512,
                                                        CropLayout(crop_scale=1.8))])
    assert face.context is not None
    own = real(face.crop.image)
    assert own is not None and float((own <= 0.02).mean()) < 0.02
    with MeshEngine(size=512, smoothing=False) as engine:
        walls = []
        for each in (face, dataclasses.replace(face, context=None)):
            animator = FaceAnimator(engine, [each])
            layers = animator._handles[0].layers
            assert layers is not None
            walls.append(float(layers.matte[400:460, 0:60].max()))
    assert walls[0] < 0.05 < 0.5 < walls[1], walls


# ------------------------------------------------------------------------------ the job


@pytest.mark.fixtures
def test_single_face_keeps_frames_fps_audio_and_size(tmp_path: Path, portrait: Path,
                                                     talking_clip: Path) -> None:
    out = tmp_path / "out.mp4"
    report = run_animate(AnimateConfig(source_image=portrait, driving_video=talking_clip,
                                       output=out, engine="mesh"), progress=False)
    assert folder_files(tmp_path) == {"out.mp4"}  # no temporary file left
    info = probe_video(out)
    assert report.frames == CLIP_FRAMES == info.frame_count
    assert info.fps_fraction == Fraction(25) and report.fps == 25.0
    assert info.size == (512, 512) == report.size
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.has_audio and report.audio == talking_clip
    assert audio_seconds(out) == pytest.approx(CLIP_FRAMES / 25, abs=0.1)
    assert report.faces == 1 and report.lost_frames == 0 and report.engine == "mesh"
    frames = decode_all(out)
    source = load_image(portrait)
    # the first frame is the portrait (neutral pose); later ones move
    assert np.abs(frames[0].astype(int) - source).mean() < 4
    moved = max(float(np.abs(f.astype(int) - frames[0]).mean()) for f in frames[1:])
    assert moved > 1.0
    assert "40 frames at 25 fps (with audio), 1 face (mesh)" in report.summary()


@pytest.mark.fixtures
def test_no_audio_and_audio_from_file(tmp_path: Path, portrait: Path,
                                      talking_clip: Path) -> None:
    silent = tmp_path / "silent.mp4"
    run_animate(AnimateConfig(source_image=portrait, driving_video=talking_clip,
                              output=silent, engine="mesh", keep_audio=False,
                              image_size=256), progress=False)
    assert not probe_video(silent).has_audio
    wav = tmp_path / "tone.wav"
    write_wav(wav, 3.0)
    dubbed = tmp_path / "dubbed.mp4"
    report = run_animate(AnimateConfig(source_image=portrait, driving_video=talking_clip,
                                       output=dubbed, engine="mesh", audio=wav,
                                       image_size=256), progress=False)
    assert report.audio == wav
    info = probe_video(dubbed)
    assert info.has_audio and info.audio_codec == "aac"
    # the 3 s tone is trimmed to the video's 1.6 s
    assert audio_seconds(dubbed) == pytest.approx(CLIP_FRAMES / 25, abs=0.1)


@pytest.mark.slow
@pytest.mark.fixtures
def test_multi_face_animates_every_face_and_not_the_background(
        tmp_path: Path, painting: Path, talking_clip: Path) -> None:
    out = tmp_path / "multi.mp4"
    report = run_animate(AnimateConfig(source_image=painting, driving_video=talking_clip,
                                       output=out, engine="mesh", multi_face=True),
                         progress=False)
    image = load_image(painting)
    landmarks = find_portrait_faces(image, multi_face=True)
    assert report.faces == len(landmarks) >= 4
    frames = decode_all(out)
    assert len(frames) == CLIP_FRAMES and frames[0].shape == image.shape
    stack = np.stack(frames).astype(np.int16)
    motion = np.abs(stack - stack[0]).max(axis=0).max(axis=2)  # per-pixel largest change
    faces_mask = np.zeros(image.shape[:2], bool)
    for lm in landmarks:
        x0, y0 = lm[:, :2].min(axis=0).astype(int)
        x1, y1 = lm[:, :2].max(axis=0).astype(int)
        region = motion[y0:y1, x0:x1]
        assert (region > 12).mean() > 0.05, "a face did not move"
        side = max(x1 - x0, y1 - y0)
        faces_mask[max(0, y0 - side):y1 + side, max(0, x0 - side):x1 + side] = True
    # away from every face nothing moves (codec noise only)
    assert np.percentile(motion[~faces_mask], 99.9) <= 6
    # and the background is the painting itself
    assert np.abs(stack[-1][~faces_mask] - image[~faces_mask]).mean() < 2.0


@pytest.mark.fixtures
def test_a_large_portrait_is_animated_at_the_capped_size(tmp_path: Path, portraits_dir: Path,
                                                         talking_clip: Path) -> None:
    from live.geometry import fit_size
    from live.io.video import h264_level

    photo = load_image(portraits_dir / "deepface_img1_smile_teeth.jpg")  # 1382x1868
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), cv2.cvtColor(cv2.resize(photo, (2764, 3736)), cv2.COLOR_RGB2BGR))
    for max_size, want in ((None, (1420, 1920)), (640, (473, 640)), (0, (2764, 3736))):
        out = tmp_path / f"out_{max_size}.mp4"
        options = {} if max_size is None else {"max_size": max_size}
        report = run_animate(AnimateConfig(source_image=big, driving_video=talking_clip,
                                           output=out, engine="mesh", max_frames=4,
                                           keep_audio=False, **options), progress=False)
        assert report.size == want == fit_size((2764, 3736), max_size if max_size is not None
                                               else 1920)
        info = probe_video(out)
        encoded = (want[0] + want[0] % 2, want[1] + want[1] % 2)  # yuv420p: even sides
        assert info.size == encoded and info.frame_count == 4
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.level == h264_level(*encoded, 25)
    with VideoReader(tmp_path / "out_640.mp4") as reader:
        first = next(iter(reader)).image[:, :473]
    small = cv2.resize(photo, (473, 640), interpolation=cv2.INTER_AREA)
    assert np.abs(first.astype(int) - small).mean() < 4  # the whole picture, scaled


def _detail(image: np.ndarray) -> float:
    """Mean absolute Laplacian of the luma: how much fine detail a picture holds."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F)).mean())


@pytest.mark.fixtures
def test_a_big_face_keeps_the_photos_detail(tmp_path: Path, portraits_dir: Path,
                                            talking_clip: Path) -> None:
    # a 1382x1868 photo whose face crop is ~1500 px: animated at its own resolution, the
    # first frame keeps most of the photo's fine detail (H.264 and the warp's sampling take
    # some); at a 512 px crop a quarter of it was left (measured 0.64 and 0.23)
    path = portraits_dir / "deepface_img1_smile_teeth.jpg"
    photo = load_image(path)
    out = tmp_path / "out.mp4"
    run_animate(AnimateConfig(source_image=path, driving_video=talking_clip, output=out,
                              engine="mesh", max_frames=1, keep_audio=False), progress=False)
    with VideoReader(out) as reader:
        first = next(iter(reader)).image[:photo.shape[0], :photo.shape[1]]
    face = (slice(450, 1100), slice(400, 1000))
    assert _detail(first[face]) > 0.5 * _detail(photo[face])
    assert np.abs(first.astype(int) - photo).mean() < 3.5


@pytest.mark.fixtures
def test_cli_overwrite_replaces_an_existing_output(tmp_path: Path, portrait: Path,
                                                   talking_clip: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an older result")
    args = ["--source-image", portrait, "--driving-video", talking_clip, "-o", out,
            "--engine", "mesh", "--max-frames", "3", "--no-audio"]
    code, err = run_cli(capsys, *args)
    assert code == 2 and "already exists" in err and out.read_bytes() == b"an older result"
    code, _ = run_cli(capsys, *args, "-y")
    assert code == 0 and probe_video(out).frame_count == 3
    assert folder_files(tmp_path) == {"out.mp4"}


@pytest.mark.fixtures
def test_driving_frames_without_a_face_hold_the_pose(tmp_path: Path, driving_dir: Path,
                                                     portrait: Path) -> None:
    clip = cut_clip(driving_dir / "lp_d11.mp4", tmp_path / "gap.mp4", 30, blank=range(20, 25),
                    audio=False)
    out = tmp_path / "held.mp4"
    report = run_animate(AnimateConfig(source_image=portrait, driving_video=clip, output=out,
                                       engine="mesh", image_size=256), progress=False)
    assert report.frames == 30 and report.lost_frames == 5
    assert "5 driving frames without a face (pose held)" in report.summary()
    frames = np.stack(decode_all(out)).astype(np.int16)
    held = [float(np.abs(frames[i] - frames[19]).mean()) for i in range(20, 25)]
    assert max(held) < 0.6  # 0.2 s gap < the engine's hold time: the pose stays put


@pytest.mark.fixtures
def test_frames_before_the_first_face_show_the_portrait(tmp_path: Path, driving_dir: Path,
                                                        portrait: Path) -> None:
    clip = cut_clip(driving_dir / "lp_d11.mp4", tmp_path / "late.mp4", 16, blank=range(0, 6),
                    audio=False)
    config = AnimateConfig(source_image=portrait, driving_video=clip,
                           output=tmp_path / "late_out.mp4", engine="mesh", image_size=256)
    assert find_first_face(config, 256) == 6
    report = run_animate(config, progress=False)
    assert report.frames == 16 and report.lost_frames == 6
    frames = np.stack(decode_all(config.output)).astype(np.int16)
    still = load_image(portrait).astype(np.int16)
    # no pose before the first face: one still picture, the portrait as it is (up to H.264
    # loss, ~2 grey levels here, and the face crop's 256 px rendering)
    assert max(float(np.abs(frames[i] - frames[0]).mean()) for i in range(1, 6)) < 0.3
    assert float(np.abs(frames[0] - still).mean()) < 5.0
    # from the first face on, the frames come from the driving face: they are not all one
    assert float(np.abs(frames[15] - frames[6]).mean()) > 0.3


@pytest.mark.fixtures
def test_a_faceless_video_fails_before_anything_is_animated(
        tmp_path: Path, portrait: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from live.jobs.animate import FaceAnimator

    faceless = tmp_path / "wall.mp4"
    with VideoWriter(faceless, fps=10, size=(160, 120)) as w:
        for _ in range(8):
            w.write(np.full((120, 160, 3), 90, np.uint8))
    calls: list[int] = []
    monkeypatch.setattr(FaceAnimator, "process",
                        lambda self, driving, t: calls.append(1) or [])
    with pytest.raises(NoFaceError, match="no face in all 8 frames"):
        run_animate(AnimateConfig(source_image=portrait, driving_video=faceless,
                                  output=tmp_path / "o.mp4", engine="mesh"), progress=False)
    assert calls == []
    assert folder_files(tmp_path) == {"wall.mp4"}


@pytest.mark.fixtures
def test_small_face_in_a_phone_video_is_found(tmp_path: Path, driving_dir: Path,
                                             portrait: Path) -> None:
    clip = cut_clip(driving_dir / "lp_d13.mp4", tmp_path / "phone.mp4", 20, audio=False)
    report = run_animate(AnimateConfig(source_image=portrait, driving_video=clip,
                                       output=tmp_path / "o.mp4", engine="mesh",
                                       image_size=256), progress=False)
    assert report.frames == 20 and report.lost_frames == 0
    assert report.size == (512, 512)


@pytest.mark.fixtures
def test_a_thumbnail_portrait_is_animated_at_the_engines_smallest_crop(
        tmp_path: Path, driving_dir: Path, portrait: Path) -> None:
    # a 48 px portrait: its face crop is enlarged to the mesh engine's smallest crop and the
    # video keeps the thumbnail's size (animated whole, it asked the engine for a 48 px crop,
    # an options error naming a "size" the user never gave)
    thumb = tmp_path / "thumb.png"
    cv2.imwrite(str(thumb), cv2.resize(cv2.imread(str(portrait)), (48, 48),
                                       interpolation=cv2.INTER_AREA))
    clip = cut_clip(driving_dir / "lp_d3.mp4", tmp_path / "d.mp4", 3, audio=False)
    report = run_animate(AnimateConfig(source_image=thumb, driving_video=clip,
                                       output=tmp_path / "o.mp4", engine="mesh"),
                         progress=False)
    assert report.frames == 3 and report.size == (48, 48)


@pytest.mark.slow
@pytest.mark.fixtures
def test_best_frame_picks_the_pose_closest_to_the_portrait(tmp_path: Path, portrait: Path,
                                                           talking_clip: Path) -> None:
    from calibrate.neutral import best_matching_frame
    from live.face.tracking import FaceTracker

    out = tmp_path / "best.mp4"
    report = run_animate(AnimateConfig(source_image=portrait, driving_video=talking_clip,
                                       output=out, engine="mesh", image_size=256,
                                       best_frame=True), progress=False)
    assert report.frames == CLIP_FRAMES and report.best_frame is not None
    # the same choice as the batch function over all the driving landmarks
    source = load_image(portrait)
    (portrait_lm,) = find_portrait_faces(source, multi_face=False)
    with VideoReader(talking_clip) as reader, FaceTracker(crop_size=256, crop_scale=2.0,
                                                          crop_shift_y=-0.08,
                                                          full_range=True) as tracker:
        driving = [None if (f := tracker.process(fr).face) is None else f.landmarks
                   for fr in reader]
    assert report.best_frame == best_matching_frame(portrait_lm, driving)


# -------------------------------------------------------------------------- bad input


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main(["animate", *map(str, args)])
    err = capsys.readouterr().err
    return code, err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("mimicam: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.fixtures
def test_cli_success_prints_one_summary_line(tmp_path: Path, portrait: Path,
                                             talking_clip: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.mp4"
    code = main(["-q", "animate", "--source-image", str(portrait), "--driving-video",
                 str(talking_clip), "--output", str(out), "--engine", "mesh",
                 "--image-size", "256"])
    captured = capsys.readouterr()
    assert code == 0 and out.is_file()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"mimicam animate: wrote {out}: 40 frames at 25 fps")
    assert "0 driving frames without a face" in lines[0]


@pytest.mark.parametrize("ratio", ["0.1", "1.5", "abc"])
@pytest.mark.fixtures
def test_cli_ratio_out_of_range_is_exit_2(tmp_path: Path, portrait: Path, talking_clip: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          ratio: str) -> None:
    args = ["animate", "--source-image", str(portrait), "--driving-video", str(talking_clip),
            "-o", str(tmp_path / "o.mp4"), "--multi-face", "--ratio", ratio]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse rejects a non-number itself, also with exit 2
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert "ratio" in err and err.count("error:") == 1
    assert folder_files(tmp_path) == set()


@pytest.mark.fixtures
def test_cli_errors_are_one_line_exit_2_and_leave_nothing(
        tmp_path: Path, portrait: Path, talking_clip: Path, driving_dir: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import model_export.weights as weights

    monkeypatch.setattr(weights, "find_weights", lambda *a, **k: None)
    inputs = tmp_path / "in"
    inputs.mkdir()
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "o.mp4"

    # a truncated video: the header opens, the frames stop half-way
    data = (driving_dir / "tps_driving.mp4").read_bytes()
    cut = inputs / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    # not a video at all
    text = inputs / "notes.mp4"
    text.write_text("this is not a video\n")
    # a video with no face: flat colours
    faceless = inputs / "wall.mp4"
    with VideoWriter(faceless, fps=25, size=(320, 240)) as w:
        for i in range(12):
            w.write(np.full((240, 320, 3), 60 + 10 * i, np.uint8))
    # a picture with no face
    blank = inputs / "blank.png"
    gradient = np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], (200, 1, 3))
    cv2.imwrite(str(blank), gradient)

    cases = [
        ((portrait, cut, out), r"cut\.mp4: corrupt or truncated video at frame \d+"),
        ((portrait, text, out), r"notes\.mp4: cannot read the video file"),
        ((portrait, inputs / "missing.mp4", out), r"missing\.mp4: cannot read the video file"),
        ((portrait, faceless, out), r"wall\.mp4: no face found in any frame"),
        ((blank, talking_clip, out), r"blank\.png: no face found in the source image"),
        ((text, talking_clip, out), r"notes\.mp4: cannot read the portrait"),
        ((portrait, talking_clip, out, "--background", text),
         r"notes\.mp4: cannot read the background image"),
        ((portrait, talking_clip, tmp_path / "nowhere" / "o.mp4"), r"cannot write the output"),
        ((portrait, talking_clip, outdir), r"cannot write the output video.*a directory"),
    ]
    for (src, drv, dst, *more), pattern in cases:
        code, err = run_cli(capsys, "--source-image", src, "--driving-video", drv,
                            "-o", dst, "--engine", "mesh", "--image-size", "256", *more)
        assert code == 2, (pattern, err)
        assert re.search(pattern, error_line(err)), (pattern, err)
        assert folder_files(outdir) == set(), pattern
    # fomm without weights
    code, err = run_cli(capsys, "--source-image", portrait, "--driving-video", talking_clip,
                        "-o", out, "--engine", "fomm")
    assert code == 2 and "fomm engine needs weights" in error_line(err)
    assert folder_files(outdir) == set()
    # with --best-frame the faceless video fails in the first pass, also leaving nothing
    code, err = run_cli(capsys, "--source-image", portrait, "--driving-video", faceless,
                        "-o", out, "--engine", "mesh", "--best-frame")
    assert code == 2 and "no face found in any frame" in error_line(err)
    assert folder_files(outdir) == set()


@pytest.mark.fixtures
def test_run_animate_raises_typed_errors(tmp_path: Path, portrait: Path) -> None:
    faceless = tmp_path / "wall.mp4"
    with VideoWriter(faceless, fps=10, size=(160, 120)) as w:
        for _ in range(5):
            w.write(np.full((120, 160, 3), 90, np.uint8))
    with pytest.raises(NoFaceError):
        run_animate(AnimateConfig(source_image=portrait, driving_video=faceless,
                                  output=tmp_path / "o.mp4", engine="mesh"), progress=False)
    assert folder_files(tmp_path) == {"wall.mp4"}


@pytest.mark.fixtures
def test_bench_job_reports_fps_per_engine(monkeypatch: pytest.MonkeyPatch, portrait: Path,
                                          talking_clip: Path) -> None:
    import io

    import model_export.weights as weights
    from live.bench.animate import bench_animate, print_results

    monkeypatch.setattr(weights, "find_weights", lambda *a, **k: None)
    results = bench_animate(engines=["mesh", "fomm"], video=talking_clip, portrait=portrait,
                            max_frames=10)
    mesh, fomm = results
    assert mesh.skipped is None and mesh.frames == 10 and mesh.fps > 0
    assert set(mesh.stage_ms) == {"track", "animate", "paste", "encode"}
    assert mesh.seconds >= mesh.loop_seconds > 0
    assert fomm.skipped is not None and "needs weights" in fomm.skipped
    text = io.StringIO()
    print_results(results, video=talking_clip, portrait=portrait, out=text)
    lines = text.getvalue().splitlines()
    assert lines[2].split()[:2] == ["mesh", "10"] and lines[3].startswith("fomm")
