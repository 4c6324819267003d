"""Small parts of ``mimicam live``: stats, hotkeys, overlay drawing, config and the CLI."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from calibrate.errors import InputError
from live.cli.live import config_from_args
from live.cli.main import build_parser, main
from live.config import LiveConfig, parse_host_port
from live.io.hotkeys import HOTKEY_HELP, Action, Command, GlobalHotkeys, KeyHandler, command_for
from live.io.overlay import (
    OverlayInfo,
    draw_badge,
    draw_overlay,
    draw_pose_guide,
    face_outline,
    picture_in_picture,
)
from live.stats import LatencyHistogram, LiveStats

# -- stats ----------------------------------------------------------------------------------------


def test_histogram_quantiles_track_numpy() -> None:
    rng = np.random.default_rng(1)
    samples = rng.lognormal(mean=3.0, sigma=0.6, size=5000)  # ~20 ms, long tail
    hist = LatencyHistogram()
    for v in samples:
        hist.add(v)
    for q in (0.5, 0.95):
        got = hist.quantile(q)
        want = float(np.quantile(samples, q))
        assert got is not None and abs(got - want) / want < 0.02, (q, got, want)
    s = hist.summary()
    assert s["count"] == 5000
    assert s["max"] == pytest.approx(samples.max(), rel=1e-5)
    assert LatencyHistogram().quantile(0.5) is None


def test_histogram_memory_does_not_grow() -> None:
    hist = LatencyHistogram()
    size = hist._counts.nbytes
    for v in np.linspace(0.001, 1e6, 20000):
        hist.add(v)
    assert hist._counts.nbytes == size
    assert hist.quantile(1.0) == pytest.approx(1e6)


def test_live_stats_report(tmp_path: Path) -> None:
    stats = LiveStats()
    for i in range(10):
        stats.add_stage("track", 5.0 + i)
        stats.frame_sent(t_capture=100.0 + i / 30, t_sent=100.0 + i / 30 + 0.020)
    stats.count("tracking_losses")
    d = stats.to_dict(engine="mesh")
    assert d["frames_sent"] == 10 and d["tracking_losses"] == 1 and d["engine"] == "mesh"
    assert d["fps"] == pytest.approx(30.0, rel=0.01)
    c2s = d["latency_ms"]["capture_to_send"]
    assert c2s["median"] == pytest.approx(20.0, rel=0.02)
    assert d["latency_ms"]["stages"]["track"]["count"] == 10
    out = stats.write_json(tmp_path / "s.json", engine="mesh")
    assert json.loads(out.read_text())["frames_sent"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary file left


# -- hotkeys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "expected"), [
    ("1", Command(Action.PORTRAIT, 0)),
    (ord("9"), Command(Action.PORTRAIT, 8)),
    ("c", Command(Action.RECALIBRATE)),
    (ord("C"), Command(Action.RECALIBRATE)),
    (ord("p"), Command(Action.PASSTHROUGH)),
    ("O", Command(Action.OVERLAY)),
    ("f", Command(Action.FREEZE)),
    (ord("q"), Command(Action.QUIT)),
    (27, Command(Action.QUIT)),
    (65361, Command(Action.PREVIOUS)),  # Linux arrow codes of cv2.waitKeyEx
    (65363, Command(Action.NEXT)),
    (2424832, Command(Action.PREVIOUS)),  # Windows
    ("right", Command(Action.NEXT)),  # pynput key names
    ("left", Command(Action.PREVIOUS)),
    (-1, None),
    ("0", None),
    ("x", None),
    (65505, None),  # shift alone
])
def test_key_mapping(key: int | str, expected: Command | None) -> None:
    assert command_for(key) == expected


def test_key_handler_delivers_commands() -> None:
    got: list[Command] = []
    handler = KeyHandler(got.append)
    assert handler.press(ord("3")) == Command(Action.PORTRAIT, 2)
    assert handler.press(ord("z")) is None
    handler.press("q")
    assert got == [Command(Action.PORTRAIT, 2), Command(Action.QUIT)]


def test_global_hotkeys_without_pynput_are_inactive(caplog: pytest.LogCaptureFixture) -> None:
    try:
        import pynput  # noqa: F401
    except Exception:
        with caplog.at_level("WARNING", logger="live.io.hotkeys"):
            keys = GlobalHotkeys(KeyHandler(lambda c: None))
        assert not keys.active
        assert "mimicam[hotkeys]" in caplog.text  # the user asked for them: say how
        keys.close()
        keys.close()
    else:  # pragma: no cover - pynput present: it may or may not start without a display
        pytest.skip("pynput is installed here; the fallback path is not reachable")


def test_help_lists_the_hotkeys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["live", "--help"])
    text = capsys.readouterr().out
    for keys, description in HOTKEY_HELP:
        assert keys in text and description in text
    for flag in ("--duration", "--stats", "--http", "--no-vcam", "--no-preview", "--record",
                 "--driver", "--camera", "--engine", "--config"):
        assert flag in text


# -- overlay --------------------------------------------------------------------------------------


def test_overlay_draws_on_a_copy() -> None:
    img = np.full((720, 1280, 3), 128, np.uint8)
    info = OverlayInfo(fps=29.7, latency_ms=41.0, engine="mesh", tracking="face",
                       portrait="1/3 a.png", frozen=True)
    out = draw_overlay(img, info)
    assert (img == 128).all()
    assert (out != img).any(axis=-1)[:150, :600].mean() > 0.05  # status block top left
    assert (out != img).any(axis=-1)[-250:, :600].mean() > 0.05  # hotkeys bottom left
    assert (out == img).all(axis=-1)[:, 900:].all()  # nothing on the right
    bare = draw_overlay(img, info, hotkeys=False)
    assert (bare == img).all(axis=-1)[-200:].all()


def test_badge_is_red_at_the_top_right() -> None:
    img = np.zeros((360, 640, 3), np.uint8)
    out = draw_badge(img, "CAMERA LOST")
    red = (out[..., 0] > 180) & (out[..., 1] < 80)
    ys, xs = np.nonzero(red)
    assert len(xs) > 1500  # a solid badge, not a few pixels
    assert xs.min() > 320 and ys.max() < 90  # in the top right corner
    assert (out[ys.min():ys.max(), xs.min():xs.max()] > 200).all(axis=-1).any()  # white text
    assert img.max() == 0


def test_pose_guide_maps_the_portrait_outline_onto_the_camera_image() -> None:
    lm = np.zeros((478, 3), np.float32)
    angles = np.linspace(0, 2 * np.pi, 478)
    lm[:, 0] = 100 + 40 * np.cos(angles)  # a circle of radius 40 at (100, 100)
    lm[:, 1] = 100 + 40 * np.sin(angles)
    outline = face_outline(lm)
    assert outline.shape == (36, 2)
    cam = np.zeros((400, 400, 3), np.uint8)
    # the portrait is 200x200: letterboxed into the camera image it scales by 2
    out = draw_pose_guide(cam, outline, (200, 200))
    green = out[..., 1] > 150
    ys, xs = np.nonzero(green)
    assert abs(xs.mean() - 200) < 10 and abs(ys.mean() - 200) < 10
    r = np.hypot(xs - 200, ys - 200)
    assert r.max() == pytest.approx(80, abs=4)  # the outline's points lie on the circle
    pip = picture_in_picture(np.zeros((720, 1280, 3), np.uint8), out)
    # the guide shows bottom right at 0.28 of the width (358 px), 12 px from the edges, framed
    side = round(1280 * 0.28)
    x0, y0 = 1280 - 12 - side, 720 - 12 - side
    assert (pip[y0 - 1, x0 - 1:x0 + side + 1] == 255).all()  # the white frame's top edge
    assert (pip[y0 - 1:y0 + side + 1, x0 - 1] == 255).all()  # and its left edge
    thumb_green = pip[y0:y0 + side, x0:x0 + side, 1] > 100
    ys, xs = np.nonzero(thumb_green)
    scale = side / 400
    assert abs(xs.mean() - 200 * scale) < 5 and abs(ys.mean() - 200 * scale) < 5
    assert np.hypot(xs - 200 * scale, ys - 200 * scale).max() == pytest.approx(80 * scale, abs=4)
    outside = np.ones((720, 1280), bool)
    outside[y0 - 1:y0 + side + 1, x0 - 1:x0 + side + 1] = False
    assert pip[outside].max() == 0  # nothing else of the picture changed
    with pytest.raises(ValueError, match="expected"):
        face_outline(np.zeros((10, 2)))


# -- config and CLI -------------------------------------------------------------------------------


def _args(*argv: str) -> LiveConfig:
    args = build_parser().parse_args(["live", *argv])
    return config_from_args(args)


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    toml = tmp_path / "live.toml"
    toml.write_text('portrait = "p.png"\nwidth = 1920\nheight = 1080\nhttp = "9000"\n'
                    "preview = false\n")
    cfg = _args("--config", str(toml), "--size", "640x360", "--no-vcam")
    assert cfg.portrait == Path("p.png")
    assert (cfg.width, cfg.height) == (640, 360)
    assert cfg.http == "9000" and cfg.preview is False and cfg.vcam is False
    assert cfg.fps == LiveConfig().fps  # untouched default
    plain = _args()
    assert plain == LiveConfig()


def test_config_file_is_strict(tmp_path: Path) -> None:
    toml = tmp_path / "live.toml"
    toml.write_text("widht = 1920\n")
    with pytest.raises(InputError, match="unknown config key"):
        _args("--config", str(toml))
    toml.write_text('fps = "fast"\n')
    with pytest.raises(InputError, match="wrong type; expected a number; got str 'fast'"):
        _args("--config", str(toml))
    toml.write_text("auto_match = 1\n")  # (TOML's types in a TOML file's words)
    with pytest.raises(InputError, match="expected true or false; got int 1"):
        _args("--config", str(toml))


def test_settings_are_checked() -> None:
    with pytest.raises(InputError, match="fps"):
        LiveConfig(fps=0)
    with pytest.raises(InputError, match="engine"):
        LiveConfig(engine="magic")
    with pytest.raises(InputError, match="HOST:PORT"):
        LiveConfig(http="localhost:http")
    assert parse_host_port("8090") == ("127.0.0.1", 8090)
    assert parse_host_port("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_host_port(":0") == ("127.0.0.1", 0)


def test_cli_reports_a_missing_portrait(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["live", "--portrait", str(tmp_path / "nope.png"), "--no-vcam",
                 "--no-preview", "--duration", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.png" in err and "expected" in err
    assert threading.active_count() < 50


def test_the_driving_crop_is_the_engines_size_for_fomm_and_at_most_256_for_mesh() -> None:
    # one rule for live, animate and the benchmarks: fomm reads the crop as its input; the
    # mesh engine's driver pixels (mouth, shading, flow) at 256 px live, 512 offline
    from types import SimpleNamespace

    from live.engines.base import (
        MESH_DRIVING_CROP,
        MESH_OFFLINE_DRIVING_CROP,
        driving_crop_size,
    )

    assert MESH_DRIVING_CROP == 256 and MESH_OFFLINE_DRIVING_CROP == 512
    assert driving_crop_size(SimpleNamespace(name="mesh", size=512)) == 256
    assert driving_crop_size(SimpleNamespace(name="mesh", size=128)) == 128
    assert driving_crop_size(SimpleNamespace(name="mesh", size=512), offline=True) == 512
    assert driving_crop_size(SimpleNamespace(name="mesh", size=947), offline=True) == 512
    assert driving_crop_size(SimpleNamespace(name="mesh", size=300), offline=True) == 300
    assert driving_crop_size(SimpleNamespace(name="fomm", size=512)) == 512
    assert driving_crop_size(SimpleNamespace(name="fomm", size=256)) == 256
    assert driving_crop_size(SimpleNamespace(name="fomm", size=256), offline=True) == 256
    remote = SimpleNamespace(name="remote", size=512, server_engine="fomm")
    assert driving_crop_size(remote) == 512
    remote.server_engine = "mesh"
    assert driving_crop_size(remote) == 256
    assert driving_crop_size(remote, offline=True) == 256  # the bytes on the wire


def test_live_cuts_the_mesh_engines_driving_crop_at_most_at_384_px_and_fomms_at_its_size(
        ) -> None:
    from types import SimpleNamespace

    from live.engines.base import MESH_LIVE_DRIVING_CROP, driving_crop_limit

    assert MESH_LIVE_DRIVING_CROP == 384
    assert driving_crop_limit(SimpleNamespace(name="mesh", size=512)) == 384
    assert driving_crop_limit(SimpleNamespace(name="mesh", size=947)) == 384
    assert driving_crop_limit(SimpleNamespace(name="mesh", size=320)) == 320
    assert driving_crop_limit(SimpleNamespace(name="mesh", size=128)) == 128
    assert driving_crop_limit(SimpleNamespace(name="fomm", size=256)) == 256
    remote = SimpleNamespace(name="remote", size=512, server_engine="mesh")
    assert driving_crop_limit(remote) == 256  # raw crops on the wire: as before


@pytest.mark.fixtures
def test_the_demo_and_the_engine_bench_track_at_the_one_rules_crop_size(
        portraits_dir: Path, driving_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the demo's --driving and `bench --engine mesh` ask driving_crop_size, as live and
    # animate do (they had 256 written out: a 512 px fomm demo got a 256 px crop)
    import live.engines.base as base
    import live.face.tracking as tracking
    from live.bench.engine import bench_engine_mesh
    from live.jobs.demo import run_demo

    asked: list[tuple[str, int, bool]] = []
    sizes: list[int] = []
    maxima: list[int | None] = []

    def rule(engine: object, *, offline: bool = False) -> int:
        asked.append((getattr(engine, "name", ""), int(getattr(engine, "size", 0)), offline))
        return 96

    class Recording(tracking.FaceTracker):
        def __init__(self, *args: object, crop_size: int = 256,
                     max_crop_size: int | None = None, **kwargs: object) -> None:
            sizes.append(crop_size)
            maxima.append(max_crop_size)
            super().__init__(*args, crop_size=crop_size,  # type: ignore[arg-type]
                             max_crop_size=max_crop_size, **kwargs)

    monkeypatch.setattr(base, "driving_crop_size", rule)
    monkeypatch.setattr(tracking, "FaceTracker", Recording)
    result = run_demo(tmp_path / "demo.mp4", driving=driving_dir / "lp_d3.mp4", seconds=0.2,
                      size=128, preview=False, show_progress=False)
    assert result.frames > 0
    bench_engine_mesh(driving=driving_dir / "lp_d3.mp4", portrait=portraits_dir / "lp_s42.jpg",
                      frames=2, warmup=0, size=160)
    # the demo writes a file (offline); the engine bench times what live does (its smallest
    # crop, and its largest by driving_crop_limit, which asks the rule too)
    assert asked == [("mesh", 128, True), ("mesh", 160, False), ("mesh", 160, False)]
    assert sizes == [96, 96] and maxima == [None, 160]


@pytest.mark.fixtures
def test_animate_tracks_the_mesh_engines_driving_face_at_512_px(
        portraits_dir: Path, driving_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the offline job writes a file: the driver's mouth and creases from a 512 px crop
    import live.face.tracking as tracking
    from live.jobs.animate import AnimateConfig, run_animate

    sizes: list[int] = []

    class Recording(tracking.FaceTracker):
        def __init__(self, *args: object, crop_size: int = 256, **kwargs: object) -> None:
            sizes.append(crop_size)
            super().__init__(*args, crop_size=crop_size, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tracking, "FaceTracker", Recording)
    out = tmp_path / "out.mp4"
    run_animate(AnimateConfig(source_image=portraits_dir / "lp_s42.jpg",
                              driving_video=driving_dir / "lp_d3.mp4", output=out,
                              engine="mesh", keep_audio=False, max_frames=3), progress=False)
    assert out.is_file() and sizes and set(sizes) == {512}


@pytest.mark.fixtures
def test_live_tracks_the_mesh_engines_driving_face_at_the_cameras_resolution(
        portraits_dir: Path, driving_dir: Path) -> None:
    # 256 px crops for a face the camera shows small, up to 384 px for one it shows large
    # (lp_d3's face square in a 640x480 frame is larger than the frame's height)
    from live.jobs.build import build_pipeline

    for driver_size, crop in (((640, 480), 384), ((320, 240), 256)):
        cfg = LiveConfig(portrait=portraits_dir / "lp_s42.jpg",
                         driver=driving_dir / "lp_d3.mp4", width=640, height=360,
                         vcam=False, preview=False, duration=0.5)
        with build_pipeline(cfg, realtime=False, driver_size=driver_size) as p:
            assert p.engine.size == 512
            assert (p.tracker.crop_size, p.tracker.max_crop_size) == (256, 384)
            p.run()
            assert p.summary()["frames_sent"] > 0
            assert p.tracker.current_crop_size == crop, driver_size
            assert p.summary()["driving_crop"] == crop  # in --stats FILE.json too
