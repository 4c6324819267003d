"""The self-reconstruction and identity benchmarks (``live.bench.reconstruct``): metric
functions on synthetic arrays, the missing-extra error, and short real runs (``../shared``
fixtures and the ``bench`` extra, dlib)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from calibrate.errors import MimicamError
from live.bench import reconstruct as rc
from live.cli.main import main

HAVE_DLIB = all(importlib.util.find_spec(m) is not None
                for m in ("dlib", "face_recognition_models"))
needs_dlib = pytest.mark.skipif(not HAVE_DLIB, reason="needs the bench extra (dlib, "
                                "face-recognition-models): pip install -e '.[bench]'")


def _frames(n: int, seed: int = 0, shape: tuple[int, int] = (40, 60)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(n)]


# ------------------------------------------------------------------------- metric functions


def test_l1_and_psnr_exact_values() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 51, np.uint8)  # 51 / 255 = 0.2
    assert rc.l1_distance(a, b) == pytest.approx(0.2, abs=1e-12)
    assert rc.mean_squared_error(a, b) == pytest.approx(0.04, abs=1e-12)
    assert rc.psnr_db(0.04) == pytest.approx(13.979400086720377, abs=1e-9)
    assert rc.psnr_db(0.01) == pytest.approx(20.0)
    c = b.copy()
    c[0, 0, 0] = 0  # one of 48 values off by 0.2
    assert rc.l1_distance(c, b) == pytest.approx(0.2 / 48)


def test_identical_images_score_zero() -> None:
    (img,) = _frames(1)
    assert rc.l1_distance(img, img.copy()) == 0.0
    assert rc.mean_squared_error(img, img) == 0.0
    assert math.isinf(rc.psnr_db(0.0))


def test_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        rc.l1_distance(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 3, 3), np.uint8))


def test_keypoint_embedding_distance_and_ratio() -> None:
    a = np.zeros((68, 2))
    b = a + np.array([3.0, 4.0])
    assert rc.keypoint_distance(a, b) == pytest.approx(5.0)
    assert rc.embedding_distance(np.zeros(128), np.full(128, 0.5)) == pytest.approx(
        math.sqrt(128 * 0.25))
    assert rc.ratio(1.0, 4.0) == 0.25
    assert math.isnan(rc.ratio(1.0, 0.0))
    assert math.isnan(rc.ratio(math.nan, 1.0))


def test_eval_view_takes_the_centred_square() -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, 10:50] = 200  # the centred 40x40 square
    view = rc.eval_view(img, size=40)
    assert view.shape == (40, 40, 3)
    assert (view == 200).all()
    assert rc.eval_view(np.zeros((512, 300, 3), np.uint8)).shape == (256, 256, 3)


def test_output_equal_to_real_scores_zero_and_frozen_is_frame0_vs_real() -> None:
    real = _frames(5, seed=1)
    m, samples = rc.evaluate_frames(real, [r.copy() for r in real], sheet_at=(0, 4))
    views = [rc.eval_view(r) for r in real]
    expected_frozen = float(np.mean([rc.l1_distance(views[0], v) for v in views]))
    assert m.frames == 5
    assert m.l1 == 0.0
    assert math.isinf(m.psnr)
    assert m.l1_frozen == pytest.approx(expected_frozen, rel=1e-12)
    assert m.l1_frozen > 0
    assert m.l1_ratio == 0.0
    mse = float(np.mean([rc.mean_squared_error(views[0], v) for v in views]))
    assert m.psnr_frozen == pytest.approx(rc.psnr_db(mse))
    assert [i for i, _, _ in samples] == [0, 4]
    assert math.isnan(m.akd) and m.evaluated == 0  # no dlib given


def test_a_frozen_output_scores_like_the_frozen_baseline() -> None:
    real = _frames(4, seed=2)
    m, _ = rc.evaluate_frames(real, [real[0]] * 4)
    assert m.l1 == pytest.approx(m.l1_frozen)
    assert m.l1_ratio == pytest.approx(1.0)
    assert m.psnr_gain_db == pytest.approx(0.0)


class _FacesOnlyInReal:
    """A stand-in for DlibFaces: finds a face in the real frames (all pixels even) and
    none in outputs (all pixels odd)."""

    def find(self, image: np.ndarray) -> rc.FaceFeatures | None:
        if int(image[0, 0, 0]) % 2:
            return None
        return rc.FaceFeatures((0, 0, 10, 10), np.zeros((68, 2)), np.zeros(128))


class _OpenMouth:
    """A stand-in for DlibFaces whose faces all have an open mouth: dlib's inner lip points
    (60-67) round a 20 x 10 px box at (20, 10)-(40, 20) of the 256 px view."""

    def find(self, image: np.ndarray) -> rc.FaceFeatures:
        pts = np.zeros((68, 2))
        pts[60:68] = [(20, 15), (25, 10), (30, 10), (35, 10), (40, 15), (35, 20), (30, 20),
                      (25, 20)]
        return rc.FaceFeatures((0, 0, 10, 10), pts, np.zeros(128))


def test_the_mouth_l1_is_scored_inside_the_real_frames_open_mouth() -> None:
    """The mouth L1 looks only inside the real frame's inner lip polygon: an output wrong
    everywhere else scores 0 there, one wrong inside scores its error there."""
    real = [np.full((256, 256, 3), 100, np.uint8) for _ in range(3)]
    real[1][12:18, 24:36] = 200  # frame 1's mouth: lighter inside
    output = [np.full((256, 256, 3), 30, np.uint8) for _ in range(3)]
    for o, r in zip(output, real, strict=True):  # the mouth's inside right, the rest wrong
        o[12:18, 24:36] = r[12:18, 24:36]
    m, _ = rc.evaluate_frames(real, output, faces=_OpenMouth(), every=1)  # type: ignore[arg-type]
    assert m.mouth_frames == 3
    inside = rc.opening_mask(_OpenMouth().find(real[0]).landmarks)
    assert inside is not None and 100 < int(inside.sum()) < 200  # the polygon, about 150 px
    # in the block, the output is right; around it, 70 levels off (inside the polygon)
    edge = inside.copy()
    edge[12:18, 24:36] = False
    expected = 70.0 / 255.0 * edge.sum() / inside.sum()
    assert m.mouth_l1 == pytest.approx(expected, rel=1e-9)
    assert m.l1 > m.mouth_l1 + 0.1  # the rest of the frame is further off
    # frozen (frame 0 held) is wrong only inside frame 1's lighter mouth
    frozen_1 = rc.masked_l1(real[0], real[1], inside)
    assert m.mouth_l1_frozen == pytest.approx(frozen_1 / 3, rel=1e-9)
    assert m.mouth_l1_ratio == pytest.approx(m.mouth_l1 / m.mouth_l1_frozen)
    closed = np.zeros((68, 2))
    closed[60:68] = [(20, 15), (25, 15.5), (30, 15.5), (35, 15.5), (40, 15), (35, 15),
                     (30, 15), (25, 15)]
    assert rc.opening_mask(closed) is None  # a closed mouth is not scored


def test_a_lost_output_face_is_counted_and_logged_with_its_frame(
        caplog: pytest.LogCaptureFixture) -> None:
    real = [np.full((40, 60, 3), 2 * k, np.uint8) for k in range(4)]
    output = [r.copy() for r in real]
    output[2] = output[2] + 1  # odd: the stand-in finds no face in frame 2's output
    with caplog.at_level("INFO", logger=rc.__name__):
        m, _ = rc.evaluate_frames(real, output, clip="c", faces=_FacesOnlyInReal(),  # type: ignore[arg-type]
                                  every=1)
    assert (m.evaluated, m.real_faces, m.lost, m.scored) == (4, 4, 1, 3)
    assert [r.getMessage() for r in caplog.records] == [
        "c: frame 2: dlib finds no face in the output"]


def test_sheet_indices_spread_over_the_clip() -> None:
    assert rc.sheet_indices(78) == [0, 15, 31, 46, 62, 77]
    assert rc.sheet_indices(3) == [0, 1, 2]
    assert rc.sheet_indices(0) == []


def test_contact_sheet_layout_and_heat_map(tmp_path: Path) -> None:
    real = _frames(3, seed=3, shape=(256, 256))
    sheet = rc.contact_sheet([(i, r, r) for i, r in enumerate(real)], cell=64)
    assert sheet.shape == (3 * 64, 3 * 64, 3)
    heat = rc.heat_map(real[0], real[0])
    assert heat.shape == (256, 256, 3)
    assert len(np.unique(heat.reshape(-1, 3), axis=0)) == 1  # no difference: one colour
    size = rc.write_png(tmp_path / "s.png", sheet, max_bytes=None)
    assert size == (tmp_path / "s.png").stat().st_size
    import cv2

    back = cv2.imread(str(tmp_path / "s.png"))[:, :, ::-1]
    assert np.array_equal(back, sheet)  # lossless without a size limit
    rc.write_png(tmp_path / "small.png", sheet, max_bytes=1)  # cannot fit: 3 bits dropped
    small = cv2.imread(str(tmp_path / "small.png"))
    assert not (small & 7).any()


def test_json_ready_replaces_non_finite_numbers() -> None:
    data = {"a": math.nan, "b": [math.inf, 1.5], "c": "x"}
    assert rc.json_ready(data) == {"a": None, "b": [None, 1.5], "c": "x"}


def test_missing_bench_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(MimicamError, match=r'pip install -e "\.\[bench\]"'):
        rc.DlibFaces()
    assert main(["bench", "--job", "reconstruct", "--max-frames", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[bench]"' in err[0]


def test_bench_options_the_quality_jobs_do_not_read_are_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    # `--job reconstruct --driving x.mp4` ran every fixture clip for minutes, x.mp4 unread;
    # refused before dlib or any clip is looked at
    for job, extra, named in (("reconstruct", ["--driving", "mine.mp4"], "--driving"),
                              ("identity", ["--portrait", "me.png", "--size", "256"],
                               "--portrait, --size"),
                              ("reconstruct", ["--background", "blur"], "--background")):
        assert main(["bench", "--job", job, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"mimicam: error: mimicam bench --job {job} does not read {named}; "
                       "expected --clips A,B (driving clips), --portraits A,B (identity), "
                       f"--max-frames N; got {named.replace(',', '')}"]


# ----------------------------------------------------------------------- real runs (dlib)


@needs_dlib
@pytest.mark.fixtures
def test_dlib_finds_68_landmarks_and_an_embedding(driving_dir: Path) -> None:
    frame = rc.eval_view(rc.first_frame(driving_dir / "lp_d0.mp4"))
    face = rc.DlibFaces().find(frame)
    assert face is not None
    assert face.landmarks.shape == (68, 2)
    assert face.embedding is not None and face.embedding.shape == (128,)


@needs_dlib
def test_a_face_the_detector_misses_is_measured_in_the_fallback_box() -> None:
    faces = rc.DlibFaces()
    blank = np.full((128, 128, 3), 128, np.uint8)
    assert faces.find(blank) is None
    face = faces.find(blank, fallback_box=(30, 30, 98, 98))
    assert face is not None and not face.detected
    assert face.box == (30, 30, 98, 98)
    assert face.landmarks.shape == (68, 2)
    assert face.embedding is not None and face.embedding.shape == (128,)


@needs_dlib
@pytest.mark.fixtures
def test_reconstruct_one_short_clip(driving_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    sheets = tmp_path / "sheets"
    code = main(["-q", "bench", "--job", "reconstruct", "--clips", "lp_d0.mp4",
                 "--max-frames", "20", "--json", "--sheets", str(sheets)])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["engine"] == "mesh" and result["max_frames"] == 20
    (clip,) = result["clips"]
    for key in ("l1", "l1_frozen", "psnr", "psnr_frozen", "akd", "akd_frozen", "aed",
                "aed_frozen", "lost", "l1_ratio", "akd_ratio", "aed_ratio", "psnr_gain_db"):
        assert key in clip, key
    assert clip["clip"] == "lp_d0.mp4" and clip["frames"] == 20
    for key in ("l1_ratio", "akd_ratio", "aed_ratio"):
        assert clip[key] is not None and math.isfinite(clip[key]), key
    assert clip["l1_frozen"] > 0
    assert clip["evaluated"] == 10 and clip["scored"] > 0
    for key in ("median_l1_ratio", "median_akd_ratio", "median_aed_ratio"):
        assert math.isfinite(result["summary"][key])
    assert "mouth_l1_ratio" in clip and clip["mouth_frames"] <= clip["real_faces"]
    sheet = Path(clip["sheet"])
    assert sheet.is_file() and sheet.parent == sheets
    assert sheet.stat().st_size < 300_000


@needs_dlib
@pytest.mark.fixtures
def test_identity_one_pair(driving_dir: Path, portraits_dir: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-q", "bench", "--job", "identity", "--clips", "lp_d0.mp4",
                 "--portraits", "lp_s42.jpg", "--max-frames", "12", "--every", "5", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    (pair,) = result["pairs"]
    assert pair["frames"] == 12 and pair["sampled"] == 3
    assert pair["found"] + pair["boxed"] == 3
    assert 0 <= pair["to_portrait"] < 0.4  # same person
    assert pair["portrait_driver"] > 0.6  # another person
    assert math.isfinite(pair["driver_ratio"]) and math.isfinite(pair["transfer_ratio"])
    assert result["summary"]["pairs"] == 1
    # a perfect engine's score on the clip (its own frames): in motion, so well below a
    # frozen face's 1, and the pair carries its clip's value
    (floor,) = result["floors"]
    assert floor["clip"] == "lp_d0.mp4"
    assert 0.0 <= floor["transfer_ratio"] < 0.6
    assert pair["transfer_floor"] == floor["transfer_ratio"]
    s = result["summary"]
    assert s["median_transfer_floor"] == floor["transfer_ratio"]
    assert s["max_transfer_ratio"] == pair["transfer_ratio"]
    assert s["meets_transfer_targets"] == (pair["transfer_ratio"] < 0.15)
    # a perfect warp of the portrait by the clip: moving, so below a frozen face's 1
    assert 0.0 < pair["transfer_warp"] < 1.0
    assert s["median_transfer_warp"] == s["max_transfer_warp"] == pair["transfer_warp"]


@pytest.mark.fixtures
def test_transfer_floor_of_a_held_frame_is_a_frozen_face(driving_dir: Path) -> None:
    """The floor scores frames as the job scores an output: the clip's own frames come
    close to its motion, its first frame held for every frame scores as frozen (1)."""
    clip = driving_dir / "tps_driving.mp4"
    track = rc._track_driving(clip, 20)
    region = rc.face_region(rc.first_frame(clip), path=clip)
    frames = list(rc._frames(clip, 20))
    moving = rc.transfer_floor(frames, region, track)
    held = rc.transfer_floor([frames[0]] * len(frames), region, track)
    assert held == pytest.approx(1.0, abs=1e-9)
    assert moving < 0.3


def _dots(points: np.ndarray, size: int = 128) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    image[:, :, 2] = np.arange(size, dtype=np.uint8)[None, :]  # a ramp along x at the border
    for x, y in np.round(points).astype(int):
        image[y - 2:y + 3, x - 2:x + 3, :2] = 255
    return image


def test_landmark_warp_moves_points_where_told_and_keeps_the_border() -> None:
    from live.bench.fidelity import landmark_warp

    src = np.array([[40.0, 40.0], [88.0, 40.0], [64.0, 84.0], [64.0, 60.0]])
    image = _dots(src)
    assert np.array_equal(landmark_warp(image, src, src), image)
    dst = src + np.array([[5.0, 3.0], [-4.0, 2.0], [0.0, 7.0], [3.0, -2.0]])
    moved = landmark_warp(image, src, dst)
    for a, b in zip(src.astype(int), dst.astype(int), strict=True):
        assert moved[b[1], b[0], 0] == 255  # each dot's centre went where it was told
        assert moved[a[1], a[0], 0] < 64  # and left its place
    assert np.array_equal(moved[0], image[0]) and np.array_equal(moved[:, -1], image[:, -1])
    with pytest.raises(ValueError, match="one shape"):
        landmark_warp(image, src, dst[:3])


@needs_dlib
@pytest.mark.fixtures
def test_a_perfect_warp_of_a_portrait_follows_the_clip(driving_dir: Path, portraits_dir: Path,
                                                         tmp_path: Path) -> None:
    """The perfect warp moves the portrait's own face as the meter expects: far from a
    frozen face's 1 on a clip in motion."""
    from live.face.portraits import load_image

    clip = driving_dir / "tps_driving.mp4"
    track = rc._track_driving(clip, 20)
    path = portraits_dir / "lp_s42.jpg"
    image = load_image(path)
    region = rc.face_region(image, path=path)
    warp = rc.transfer_warp(image, region, track, fps=25, work_dir=tmp_path)
    assert 0.0 < warp < 0.3
    assert not list(tmp_path.iterdir())  # its video is gone
    held = rc.transfer_warp(image, region, [track[0]] * len(track), fps=25, work_dir=tmp_path)
    assert math.isnan(held)  # nothing moves: no motion to score


@needs_dlib
@pytest.mark.fixtures
def test_reconstruct_floor_scores_the_clip_itself(driving_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-q", "bench", "--job", "reconstruct", "--clips", "lp_d0.mp4",
                 "--max-frames", "8", "--every", "4", "--floor", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    (clip,) = result["clips"]
    floor = clip["floor"]
    # the clip through H.264 at CRF 18 against the same frozen frame 0: closer to the real
    # frames than the engine's output (no perfect copy), and no face lost
    assert 0.0 < floor["l1_ratio"] < clip["l1_ratio"]
    assert floor["psnr_gain_db"] > clip["psnr_gain_db"]
    assert floor["lost"] == 0 and math.isfinite(floor["akd_ratio"])
    assert result["summary"]["median_floor_l1_ratio"] == floor["l1_ratio"]


def test_reports_show_the_floors() -> None:
    """The tables carry what a perfect engine scores next to the engine's scores."""
    clip = {"clip": "a.mp4", "frames": 10, "l1": 0.02, "l1_frozen": 0.04, "l1_ratio": 0.5,
            "psnr": 30.0, "psnr_frozen": 25.0, "akd": 1.0, "akd_frozen": 5.0,
            "akd_ratio": 0.2, "aed": 0.2, "aed_frozen": 0.25, "aed_ratio": 0.8, "lost": 1,
            "real_faces": 5, "mouth_l1": 0.08, "mouth_frames": 3, "mouth_l1_ratio": 0.4,
            "floor": {"l1_ratio": 0.1, "psnr_gain_db": 20.0, "akd": 0.5, "akd_ratio": 0.1,
                      "aed_ratio": 0.15, "mouth_l1_ratio": 0.05, "lost": 1, "real_faces": 5}}
    summary = {"median_l1_ratio": 0.5, "median_psnr_gain_db": 5.0, "median_akd_ratio": 0.2,
               "median_aed_ratio": 0.8, "median_mouth_l1_ratio": 0.4, "output_face_lost": 1,
               **{f"median_floor_{k}": clip["floor"][k] for k in rc.RECONSTRUCT_RATIOS}}
    text = rc.format_reconstruct({"engine": "mesh", "eval_size": 256, "every": 2,
                                  "clips": [clip], "summary": summary, "seconds": 1.0})
    assert "| a.mp4 | 0.10 | 20.00 | 0.50 | 0.100 | 0.15 | 1 of 5 |" in text
    assert "| 0.080 (3) | 0.40 | 1 of 5 |" in text and "mouth L1 ratio 0.40" in text
    assert "floor medians: L1 ratio 0.10" in text
    no_floor = rc.format_reconstruct({"engine": "mesh", "eval_size": 256, "every": 2,
                                      "clips": [{**clip, "floor": None}], "summary": summary,
                                      "seconds": 1.0})
    assert "floor" not in no_floor
    pair = {"portrait": "p.jpg", "clip": "a.mp4", "to_portrait": 0.2, "to_driver": 0.8,
            "portrait_driver": 0.8, "driver_ratio": 1.0, "transfer_ratio": 0.3,
            "transfer_floor": 0.12, "transfer_warp": 0.2, "found": 6, "sampled": 6,
            "boxed": 0, "note": ""}
    s = {"median_to_portrait": 0.2, "max_to_portrait": 0.2, "min_driver_ratio": 1.0,
         "median_driver_ratio": 1.0, "meets_targets": True, "median_transfer_ratio": 0.3,
         "max_transfer_ratio": 0.3, "meets_transfer_targets": False,
         "median_transfer_floor": 0.12, "max_transfer_floor": 0.12,
         "median_transfer_warp": 0.2, "max_transfer_warp": 0.25}
    text = rc.format_identity({"engine": "mesh", "max_frames": 60, "every": 10,
                               "pairs": [pair], "summary": s, "seconds": 1.0})
    assert "| 1.00 | 0.300 | 0.120 | 0.200 | 6/6 |" in text
    assert "misses them" in text and "median 0.120, worst 0.120" in text
    assert "perfect warp of each portrait (\"perfect warp\"): median 0.200, worst 0.250" in text
