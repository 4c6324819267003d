"""Backgrounds (#13): the option, the matte that follows the head, blur / colour / image /
transparent in ``mimicam live``, ``animate`` and ``demo``, the alpha video, the B key.

Tests marked ``fixtures`` use the team's portraits and driving videos; the others use
scikit-image's astronaut photo (a real person, shipped with scikit-image) or synthetic
pictures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from _live_fakes import ListSource, RecordingSink, read_frames
from _media import write_wav

from calibrate.errors import InputError
from calibrate.keypoints import Keypoints
from live.background import (
    Background,
    BackgroundLayer,
    background_cycle,
    blend,
    build_layer,
    layer_backdrop,
    make_backdrop,
)
from live.compose import Compositor, ellipse_mask, paste_matte
from live.config import EngineSettings, LiveConfig, from_mapping, load_toml
from live.geometry import MATTE_FADE, cover, frame_matte, framing_transform
from live.io.hotkeys import HOTKEY_HELP, Action, Command, command_for
from live.io.video import VideoWriter, check_alpha_output, probe_video, read_rgba

GREEN = (0, 255, 0)
OUT = (1280, 720)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="module")
def astronaut_layers(astronaut: np.ndarray) -> Any:
    from live.face.segmentation import prepare_layers

    layers = prepare_layers(astronaut)
    assert layers is not None
    return layers


def _corners(image: np.ndarray) -> list[np.ndarray]:
    return [image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]]


# ------------------------------------------------------------------------------ the option


@pytest.mark.parametrize(("text", "kind", "extra"), [
    ("keep", "keep", {}),
    ("KEEP", "keep", {}),
    ("blur", "blur", {"strength": 3.0}),
    ("blur:7.5", "blur", {"strength": 7.5}),
    ("#00ff00", "color", {"color": (0, 255, 0)}),
    ("#0F0", "color", {"color": (0, 255, 0)}),
    ("green", "color", {"color": (0, 255, 0)}),
    ("#123456", "color", {"color": (0x12, 0x34, 0x56)}),
    ("transparent", "transparent", {}),
])
def test_the_option_is_parsed_once_into_a_typed_value(text: str, kind: str,
                                                      extra: dict[str, Any]) -> None:
    b = Background.parse(text)
    assert b.kind == kind
    for key, value in extra.items():
        assert getattr(b, key) == value
    assert Background.parse(str(b)) == b  # str() writes it back


def test_an_image_file_is_an_image_background(tmp_path: Path) -> None:
    path = tmp_path / "office.jpg"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    b = Background.parse(str(path))
    assert b.kind == "image" and b.image == path and str(b) == str(path)


@pytest.mark.parametrize(("text", "says"), [
    ("purple-ish", "unknown background; expected keep, blur[:STRENGTH]"),
    ("blur:lots", "bad background blur strength; expected blur:STRENGTH with a number"),
    ("blur:50", "out of range; expected blur:STRENGTH with STRENGTH 0.5 to 20"),
    ("#12345", "unknown background"),
    ("missing/office.jpg", "background image not found; expected an image file; got no such"),
])
def test_a_bad_option_says_what_was_expected_and_what_came(text: str, says: str) -> None:
    with pytest.raises(InputError, match=None) as err:
        Background.parse(text)
    assert says in str(err.value)
    assert "got" in str(err.value)


def test_live_settings_take_one_or_several_backgrounds(tmp_path: Path) -> None:
    one = from_mapping(LiveConfig, {"background": "blur:5"})
    assert one.backgrounds == (Background("blur", strength=5.0),)
    toml = tmp_path / "live.toml"
    toml.write_text('background = ["blur", "green", "#102030"]\n')
    several = load_toml(toml, LiveConfig)
    assert [str(b) for b in several.backgrounds] == ["blur", "green", "#102030"]
    assert LiveConfig().backgrounds == (Background(),)  # keep: today's behaviour
    # what B cycles through: the configured ones, then keep
    assert [str(b) for b in background_cycle(several.backgrounds)] == \
        ["blur", "green", "#102030", "keep"]
    assert background_cycle((Background(),)) == (Background(),)


@pytest.mark.parametrize(("value", "says"), [
    ("nope", "config key 'background': unknown background"),
    (["keep", "nope.png"], "config key 'background': nope.png: background image not found"),
    ("transparent", "background transparent is for mimicam animate only, not mimicam live"),
    ([], "live setting background is empty"),
    (3, "config key 'background' has the wrong type"),
])
def test_live_settings_refuse_a_bad_background(value: Any, says: str) -> None:
    with pytest.raises(InputError) as err:
        from_mapping(LiveConfig, {"background": value})
    assert says in str(err.value)


def test_demo_settings_take_a_background_but_not_transparent() -> None:
    assert from_mapping(EngineSettings, {"background": "green"}).background.color == GREEN
    with pytest.raises(InputError, match="not mimicam demo"):
        from_mapping(EngineSettings, {"background": "transparent"})


def test_the_command_lines_take_the_option(tmp_path: Path) -> None:
    import argparse

    from live.cli import animate as animate_cli
    from live.cli import demo as demo_cli
    from live.cli import live as live_cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    for module in (live_cli, animate_cli, demo_cli):
        module.register(sub)
    args = parser.parse_args(["live", "--portrait", "p.png", "--background", "blur",
                              "--background", "#0f0"])
    assert [str(b) for b in live_cli.config_from_args(args).backgrounds] == ["blur", "green"]
    src, drv = tmp_path / "p.png", tmp_path / "d.mp4"
    args = parser.parse_args(["animate", "--source-image", str(src), "--driving-video",
                              str(drv), "-o", str(tmp_path / "o.webm"), "--background",
                              "transparent"])
    assert animate_cli.config_from_args(args).background.transparent
    args = parser.parse_args(["demo", "--background", "blur:4"])
    assert demo_cli.background(args) == Background("blur", strength=4.0)
    args = parser.parse_args(["demo", "--background", "transparent"])
    with pytest.raises(InputError, match="not mimicam demo"):
        demo_cli.background(args)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".gif"])
def test_transparent_needs_webm_or_mov_and_says_so(tmp_path: Path, suffix: str) -> None:
    from live.jobs.animate import AnimateConfig

    with pytest.raises(InputError) as err:
        AnimateConfig(tmp_path / "p.png", tmp_path / "d.mp4", tmp_path / f"out{suffix}",
                      background=Background("transparent"))
    text = str(err.value)
    assert "no alpha channel" in text and ".webm (VP9 with alpha" in text \
        and ".mov (ProRes 4444" in text and f"got '{suffix}'" in text
    for ok in (".webm", ".mov", ".WEBM"):
        config = AnimateConfig(tmp_path / "p.png", tmp_path / "d.mp4", tmp_path / f"o{ok}",
                               background="transparent")  # type: ignore[arg-type]
        assert config.background.transparent


def test_b_is_the_background_key() -> None:
    assert command_for("b") == Command(Action.BACKGROUND)
    assert command_for(ord("B")) == Command(Action.BACKGROUND)
    assert any(k == "B" and "background" in d for k, d in HOTKEY_HELP)


# ------------------------------------------------------------------------------ pixels


def test_blend_is_exact_where_the_matte_is_0_or_255() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    backdrop = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    matte = np.zeros((40, 60), np.uint8)
    matte[:, 30:] = 255
    matte[:, 29] = 128
    out = blend(frame, backdrop, matte)
    assert (out[:, :29] == backdrop[:, :29]).all() and (out[:, 30:] == frame[:, 30:]).all()
    mid = (frame[:, 29].astype(int) + backdrop[:, 29].astype(int)) / 2
    assert np.abs(out[:, 29] - mid).max() <= 1.5


def test_an_image_is_scaled_to_cover_never_stretched() -> None:
    # a 300x100 picture: a disc in the middle, a red left and a blue right quarter
    image = np.full((100, 300, 3), 128, np.uint8)
    image[:, :75] = (255, 0, 0)
    image[:, 225:] = (0, 0, 255)
    cv2.circle(image, (150, 50), 40, (255, 255, 255), -1)
    out = cover(image, (128, 72))  # 16:9 from 3:1: scaled by 0.72 to 216x72, cut to 128 wide
    assert out.shape == (72, 128, 3)
    white = np.argwhere(out.min(axis=2) > 200)
    h, w = np.ptp(white, axis=0) + 1
    assert abs(h - w) <= 2 and abs(h - 58) <= 2  # still a disc, 0.72 times 80 px across
    assert abs(white[:, 1].mean() - 63.5) < 1 and abs(white[:, 0].mean() - 35.5) < 1
    # the 3:1 picture's sides are cut: of each 75 px quarter 11 px are left (0.72 x 75 - 44)
    assert tuple(out[36, 2]) == (255, 0, 0) and tuple(out[36, 20]) == (128, 128, 128)
    assert tuple(out[36, 125]) == (0, 0, 255)
    tall = cover(image, (50, 200))  # scaled by 2 to 600x200, the middle 50 columns kept
    assert tall.shape == (200, 50, 3) and (tall[100] > 200).all()
    backdrop = make_backdrop(Background("image", image=Path("x.png")), (128, 72), image=image)
    assert (backdrop == out).all()


def test_a_framed_matte_fades_beyond_the_photo_and_is_0_in_letterbox_bars() -> None:
    matte = np.full((400, 300), 255, np.uint8)  # a person filling a 3:4 photo
    box = (100.0, 100.0, 200.0, 220.0)
    shoulders = framing_transform(box, (300, 400), OUT, "shoulders", eyes_y=150.0)
    framed = frame_matte(matte, shoulders)
    x0, y0, x1, y1 = shoulders.photo_rect
    assert shoulders.padded and framed.shape == (720, 1280)
    assert (framed[y0:y1, x0:x1] == 255).all()
    fade = round(MATTE_FADE * 720)
    assert framed[(y0 + y1) // 2, x0 - 1] > 240  # right at the photo's edge: the person
    assert (framed[:, :max(0, x0 - fade - 1)] == 0).all()  # beyond the fade: background
    full = framing_transform(None, (300, 400), OUT, "full")
    letter = frame_matte(matte.astype(np.float32) / 255.0, full)
    fx0, _, fx1, _ = full.photo_rect
    assert (letter[:, :fx0] == 0).all() and (letter[:, fx1:] == 0).all()
    assert (letter[:, fx0:fx1] == 255).all()


def _synthetic_compositor(framing: str = "shoulders") -> tuple[Compositor, np.ndarray]:
    """A 600x800 grey 'portrait' with a bright 'person' rectangle and its matte."""
    portrait = np.full((800, 600, 3), 90, np.uint8)
    matte = np.zeros((800, 600), np.float32)
    matte[250:800, 150:450] = 1.0
    portrait[matte > 0] = (200, 170, 150)
    side = 300.0
    crop_to_portrait = np.array([[side / 256, 0, 150.0], [0, side / 256, 200.0]])
    box = (200.0, 250.0, 400.0, 480.0)
    fr = framing_transform(box if framing != "full" else None, (600, 800), OUT,
                           framing, eyes_y=330.0)  # type: ignore[arg-type]
    comp = Compositor(portrait, crop_to_portrait, 256, OUT, feather=0.03, framing=fr,
                      matte=matte)
    return comp, portrait


@pytest.mark.parametrize("framing", ["shoulders", "head", "full"])
def test_the_crop_matte_lands_where_the_crop_does(framing: str) -> None:
    comp, _ = _synthetic_compositor(framing)
    still = comp.compose_matte(None)
    assert (still == comp.still_matte).all()
    empty = comp.compose_matte(np.zeros((256, 256), np.uint8))
    region = comp.region
    assert region is not None
    x0, y0, x1, y1 = region
    # outside the compositor's region nothing changes, frame and matte alike
    outside = np.ones(still.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert (empty[outside] == still[outside]).all()
    assert (comp.compose(np.zeros((256, 256, 3), np.uint8))[outside]
            == comp.background[outside]).all()
    # the crop's middle is fully the crop's matte (the paste mask is 1 there)
    centre = np.array([[128.0, 128.0]]) @ comp.crop_to_output[:, :2].T + comp.crop_to_output[:, 2]
    cx, cy = np.round(centre[0]).astype(int)
    assert still[cy, cx] == 255 and empty[cy, cx] == 0
    full = comp.compose_matte(np.full((256, 256), 255, np.uint8))
    assert (full >= still).all()


def test_paste_matte_is_paste_back_for_mattes() -> None:
    canvas = np.zeros((200, 300), np.uint8)
    crop = np.full((64, 64), 255, np.uint8)
    m = np.array([[1.0, 0, 100.0], [0, 1.0, 50.0]])
    region = paste_matte(canvas, crop, m, mask=ellipse_mask(64, feather=0.05))
    assert region is not None
    assert canvas[50 + 32, 100 + 32] == 255 and canvas[10, 10] == 0
    assert canvas[50, 100] < 30  # the mask's soft corner


def test_a_layer_blends_only_the_changed_region_and_gets_the_same_pixels() -> None:
    comp, _ = _synthetic_compositor("shoulders")
    plate = np.full((800, 600, 3), 90, np.uint8)
    layer = build_layer(Background("blur", strength=2.0), comp, plate=plate)
    assert isinstance(layer, BackgroundLayer)
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    crop_matte = np.zeros((256, 256), np.uint8)
    crop_matte[60:200, 40:220] = 255
    frame = comp.compose(crop)
    matte = comp.compose_matte(crop_matte)
    fast = layer.apply(frame, matte, (comp.region,))
    whole = layer.apply(frame, matte)  # the whole frame blended
    assert (fast == whole).all()
    assert build_layer(Background(), comp) is None
    assert build_layer(Background("transparent"), comp) is None


def test_a_green_layer_is_green_exactly_where_the_matte_is_0() -> None:
    comp, _ = _synthetic_compositor("shoulders")
    layer = build_layer(Background.parse("green"), comp)
    assert layer is not None
    out = layer.apply(comp.background, comp.compose_matte(None), (comp.region,))
    still = comp.still_matte
    assert still is not None
    assert (out[still == 0] == GREEN).all()
    assert (out[still == 255] == comp.background[still == 255]).all()
    for corner in _corners(out):
        assert tuple(corner) == GREEN


# ------------------------------------------------------------------------------ engines


def test_segmentation_finds_nobody_in_a_picture_without_a_person() -> None:
    from live.face.segmentation import prepare_layers, quick_matte

    flat = np.zeros((240, 320, 3), np.uint8)
    flat[:, :, 2] = np.linspace(0, 255, 320).astype(np.uint8)
    assert prepare_layers(flat) is None
    assert quick_matte(flat) is None


def test_the_mesh_engines_matte_follows_the_head(astronaut: np.ndarray) -> None:
    from live.engines.base import create_engine, crop_matte
    from live.face.portraits import find_portrait
    from live.packets import FaceCrop

    engine = create_engine("mesh", size=256)
    try:
        found = find_portrait(astronaut, 256)
        prepared = engine.prepare(found.crop.image)
        engine.set_portrait(prepared)
        still = prepared.layers.matte_u8
        assert crop_matte(engine) is None  # nothing processed yet
        lm = found.crop.landmarks.astype(np.float64)

        def face(shift: float) -> FaceCrop:
            moved = lm.copy()
            moved[:, 0] += shift
            # the driver's picture moves with its landmarks (the engine's body flow reads it)
            image = cv2.warpAffine(found.crop.image, np.float32([[1, 0, shift], [0, 1, 0]]),
                                   (256, 256), borderMode=cv2.BORDER_REPLICATE)
            return FaceCrop(image, found.crop.crop_to_frame, 0, 0.0,
                            landmarks=moved.astype(np.float32))

        engine.calibrate(face(0.0))
        engine.process(face(0.0), 0.0)
        neutral = crop_matte(engine)
        assert neutral is not None and np.abs(neutral.astype(int) - still).max() <= 1
        for k in range(1, 30):  # the head moves 30 px to the right (past the smoothing)
            out = engine.process(face(30.0), k / 30.0)
        moved = crop_matte(engine)
        assert moved is not None and moved.shape == (256, 256) and moved.dtype == np.uint8
    finally:
        engine.close()

    def centre_x(m: np.ndarray) -> float:
        head = m[:128].astype(np.float64)  # the head, above the shoulders
        return float((head * np.arange(256)).sum() / head.sum())

    assert centre_x(moved) - centre_x(still) > 8  # the matte went with the head
    # where the moved matte says background, the engine shows its still background plate
    bg = moved < 3
    plate = prepared.layers.plate
    assert np.abs(out[bg].astype(int) - plate[bg]).mean() < 3


class _FakeRuntime:
    """A FOMM runtime whose animation is a given picture (no weights)."""

    image_size = 256
    backend = "fake"

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self.calls = 0

    def detect(self, image: np.ndarray) -> Keypoints:
        kp = np.random.default_rng(7).uniform(-0.5, 0.5, (1, 10, 2)).astype(np.float32)
        kp += float(image.mean()) / 2550.0  # differs a little between pictures
        return Keypoints(value=kp, jacobian=None)

    def encode_source(self, image: np.ndarray, kp: Keypoints) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(kp=kp)

    def animate(self, state: Any, kp: Keypoints) -> np.ndarray:
        frame = self.frames[min(self.calls, len(self.frames) - 1)]
        self.calls += 1
        return frame

    def close(self) -> None:
        pass


def test_the_fomm_engine_segments_its_output_only_when_asked(astronaut: np.ndarray) -> None:
    from live.engines.fomm import FommEngine
    from live.face.portraits import find_portrait
    from live.packets import FaceCrop

    crop = find_portrait(astronaut, 256).crop
    runtime = _FakeRuntime([crop.image])
    engine = FommEngine(runtime=runtime)
    engine.set_portrait(engine.prepare(crop.image))
    assert engine.last_matte is None
    driving = FaceCrop(crop.image, crop.crop_to_frame, 0, 0.0)
    out = engine.process(driving, 0.0)
    matte = engine.last_matte
    assert matte is not None and matte.shape == out.shape[:2] and matte.dtype == np.uint8
    assert matte[128, 128] == 255 and matte[5, 5] == 0  # her face; the flag's corner
    assert engine.last_matte is matte  # once per frame
    engine.process(driving, 0.1)  # the same pose: held, not recomputed
    assert engine.last_matte is matte
    engine.close()


# ------------------------------------------------------------------------------ alpha video


@pytest.mark.parametrize(("suffix", "codec"), [(".webm", "vp9"), (".mov", "prores")])
def test_an_alpha_video_round_trips_through_pyav(tmp_path: Path, suffix: str,
                                                 codec: str) -> None:
    wav = tmp_path / "tone.wav"
    write_wav(wav, 1.0)
    out = tmp_path / f"alpha{suffix}"
    with VideoWriter(out, fps=Fraction(25), size=(96, 64), audio_from=wav, alpha=True) as w:
        for i in range(20):
            rgba = np.zeros((64, 96, 4), np.uint8)
            rgba[..., :3] = (30, 200, 60)
            rgba[16:48, 24 + i:56 + i, :3] = (240, 220, 200)
            rgba[16:48, 24 + i:56 + i, 3] = 255
            w.write(rgba)
    info = probe_video(out)
    assert info.codec == codec and info.has_audio and info.frame_count == 20
    frames = list(read_rgba(out))
    assert len(frames) == 20
    for i, f in enumerate(frames):
        assert f.shape == (64, 96, 4)
        assert f[2, 2, 3] == 0 and f[-3, -3, 3] == 0  # the background: transparent
        assert f[32, 40 + i, 3] == 255  # the 'face': opaque
        assert np.abs(f[32, 40 + i, :3].astype(int) - (240, 220, 200)).max() <= 8


def test_webm_cuts_stereo_sound_at_the_videos_end(tmp_path: Path) -> None:
    """Opus takes packed (interleaved) samples: the last chunk is cut by frames, not values
    (it used to fail with 'got N bytes; need M bytes')."""
    import av

    wav = tmp_path / "stereo.wav"
    rate = 44100
    with av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.codec_context.layout = "stereo"
        t = np.arange(rate) / rate
        tone = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)
        data = np.stack([tone, tone[::-1]], axis=1).reshape(1, -1)  # interleaved
        for i in range(0, rate, 1000):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, 2 * i:2 * i + 2000]),
                                               format="s16", layout="stereo")
            frame.sample_rate = rate
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    fps = Fraction(48000, 1601)  # 7 frames end at sample 11207 of 48 kHz: an odd cut
    for frames in (7, 12):
        target = tmp_path / f"cut{frames}.webm"
        with VideoWriter(target, fps=fps, size=(32, 32), audio_from=wav) as w:
            for _ in range(frames):
                w.write(np.zeros((32, 32, 3), np.uint8))
        assert probe_video(target).audio_codec == "opus"
        with av.open(str(target)) as c:
            samples = sum(f.samples for f in c.decode(c.streams.audio[0]))
        assert abs(samples - frames * 1601) <= 960  # the video's length, give or take a packet


def test_alpha_output_names_the_two_containers(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        VideoWriter(tmp_path / "x.mp4", fps=25, size=(64, 64), alpha=True)
    assert ".webm" in str(err.value) and ".mov" in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing left behind
    assert check_alpha_output(tmp_path / "y.mov").suffix == ".mov"


def test_an_alpha_writer_wants_rgba_frames(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "a.webm", fps=25, size=(32, 32), alpha=True) as w:
        with pytest.raises(ValueError, match="RGBA"):
            w.write(np.zeros((32, 32, 3), np.uint8))
        w.write(np.zeros((32, 32, 4), np.uint8))


# ------------------------------------------------------------------------------ demo


@pytest.mark.slow
def test_the_demo_puts_a_colour_behind_the_person(tmp_path: Path) -> None:
    from live.jobs.demo import run_demo

    out = tmp_path / "demo.mkv"
    run_demo(out, seconds=0.5, size=256, preview=False, show_progress=False,
             background=Background.parse("#0000ff"))
    frames = list(read_rgba(out))
    assert len(frames) == 15
    for f in frames:  # H.264: within a few levels of pure blue, at the flag's corner
        assert np.abs(f[3, 3, :3].astype(int) - (0, 0, 255)).max() < 12
        assert f[128, 128, 2] < 200  # her face is not blue


# ------------------------------------------------------------------------------ live, animate


def _face_points(prepared: Any) -> tuple[np.ndarray, np.ndarray]:
    """Output pixels (xs, ys) of the portrait's face, its outline pulled in by a third (the
    outline itself touches the background)."""
    pts = prepared.portrait.landmarks[:, :2]
    pts = pts.mean(axis=0) + 0.67 * (pts - pts.mean(axis=0))
    m = prepared.compositor.portrait_to_output
    xs, ys = np.round(pts @ m[:, :2].T + m[:, 2]).astype(int).T
    return xs, ys


def _live_library(portraits: list[Path], backgrounds: list[Background],
                  size: tuple[int, int] = OUT, framing: str = "shoulders") -> Any:
    from live.engines.base import create_engine
    from live.face.portraits import PortraitLibrary

    engine = create_engine("mesh", size=256)
    return PortraitLibrary(portraits, engine, output_size=size, framing=framing,  # type: ignore[arg-type]
                           backgrounds=backgrounds)


def _prepare_fails(library: Any, error: type[Exception], match: str) -> None:
    """``library.prepare(0)`` raises ``error`` (matching ``match``); the library is closed."""
    try:
        with pytest.raises(error, match=match):
            library.prepare(0)
    finally:
        library.close()


@pytest.fixture(scope="module")
def portrait_file(tmp_path_factory: pytest.TempPathFactory, portraits_dir: Path) -> Path:
    return portraits_dir / "deepface_img1_smile_teeth.jpg"


def _keep_and(background: Background, path: Path) -> tuple[Any, Any, np.ndarray]:
    """The neutral live output of ``path`` with keep and with ``background``."""
    library = _live_library([path], [background])
    try:
        prepared = library.prepare(0)
        layer = prepared.backgrounds[background]
        library.engine.set_portrait(prepared.handle)
        crop = library.engine.process(None, 0.0)  # the neutral portrait
        comp = prepared.compositor
        keep = comp.compose(crop)
        matte = comp.compose_matte(library.engine.last_matte)
        shown = layer.apply(keep, matte, (comp.region,))
        return prepared, keep, shown
    finally:
        library.close()
        library.engine.close()


@pytest.mark.fixtures
def test_live_corners_are_the_chosen_colour_exactly(portrait_file: Path) -> None:
    prepared, keep, shown = _keep_and(Background.parse("#00ff00"), portrait_file)
    for corner in _corners(shown):
        assert tuple(corner) == GREEN
    xs, ys = _face_points(prepared)
    assert (shown[ys, xs] == keep[ys, xs]).all()  # the face as it was, pixel for pixel
    assert (shown[ys, xs] != GREEN).any(axis=1).all()


@pytest.mark.fixtures
def test_live_blur_changes_the_background_not_the_face(portrait_file: Path) -> None:
    prepared, keep, shown = _keep_and(Background.parse("blur"), portrait_file)
    still = prepared.compositor.still_matte
    far = cv2.erode((still == 0).astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    diff = np.abs(shown.astype(int) - keep.astype(int)).sum(axis=2)
    assert far.mean() > 0.3
    assert diff[far].mean() > 8  # away from the person: blurred (and the person taken out)
    xs, ys = _face_points(prepared)
    assert (diff[ys, xs] == 0).all()  # the face: unchanged


@pytest.mark.fixtures
def test_live_image_background_covers_the_output(portrait_file: Path, tmp_path: Path) -> None:
    from skimage import data

    path = tmp_path / "rocket.png"
    rocket = np.ascontiguousarray(data.rocket())
    cv2.imwrite(str(path), cv2.cvtColor(rocket, cv2.COLOR_RGB2BGR))
    _, _, shown = _keep_and(Background.parse(str(path)), portrait_file)
    covered = cover(rocket, OUT)
    for (y, x) in ((0, 0), (0, -1), (-1, 0), (-1, -1), (10, 640)):
        assert (shown[y, x] == covered[y, x]).all()
    assert covered.shape == (720, 1280, 3)


@pytest.mark.fixtures
def test_nobody_found_keeps_the_portrait_with_one_warning(
        portrait_file: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import live.face.segmentation as seg

    monkeypatch.setattr(seg, "prepare_layers", lambda image, **kw: None)
    library = _live_library([portrait_file], [Background.parse("green")])
    try:
        with caplog.at_level(logging.WARNING):
            prepared = library.prepare(0)
        assert prepared.layers is None and prepared.backgrounds[Background.parse("green")] \
            is None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                    and "found no person" in r.getMessage()]
        assert len(warnings) == 1 and portrait_file.name in warnings[0].getMessage()
        assert "\n" not in warnings[0].getMessage()
    finally:
        library.close()
        library.engine.close()


@pytest.fixture
def driver(driving_dir: Path) -> list[np.ndarray]:
    frames = read_frames(driving_dir / "lp_d3.mp4", 60)
    return [cv2.resize(f, (320, 320), interpolation=cv2.INTER_AREA) for f in frames]


@pytest.fixture
def pipelines() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for p in made:
        p.close()


@pytest.mark.fixtures
def test_b_switches_backgrounds_without_dropping_a_frame(
        portraits_dir: Path, driver: list[np.ndarray], pipelines: list[Any]) -> None:
    from live.engines.base import create_engine
    from live.face.portraits import PortraitLibrary
    from live.face.tracking import FaceTracker
    from live.jobs.pipeline import LivePipeline

    size = (480, 270)
    holder: dict[str, Any] = {}
    presses = {10: "b", 30: "B"}

    def on_send(i: int) -> None:
        if i in presses:
            holder["p"].keys.press(presses[i])

    engine = create_engine("mesh", size=256)
    blue = Background.parse("#0000ff")
    library = PortraitLibrary([portraits_dir / "deepface_img1_smile_teeth.jpg"], engine,
                              output_size=size, framing="shoulders",
                              backgrounds=[Background.parse("green"), blue])
    vcam_like, recorder_like = RecordingSink(on_send), RecordingSink()
    config = LiveConfig(width=size[0], height=size[1], vcam=False, preview=False)
    p = holder["p"] = LivePipeline(config, source=ListSource(driver), engine=engine,
                                   tracker=FaceTracker(crop_size=256), library=library,
                                   sinks=[vcam_like, recorder_like])
    pipelines.append(p)
    assert [str(b) for b in p.backgrounds] == ["green", "blue", "keep"]
    stats = p.run()
    frames = vcam_like.frames
    assert stats.counters["frames_sent"] == stats.counters["frames_in"] == len(driver)
    assert stats.counters["dropped_input"] == 0 and stats.counters["background_switches"] == 2
    # every sink got the very same frames (the recorder and the MJPEG stream too)
    assert all(a is b for a, b in zip(frames, recorder_like.frames, strict=True))
    corner = [tuple(f[0, 0]) for f in frames]
    assert corner[:11] == [GREEN] * 11
    first_blue = corner.index((0, 0, 255))
    first_keep = next(i for i, c in enumerate(corner) if c not in (GREEN, (0, 0, 255)))
    assert 11 <= first_blue <= 20 and 31 <= first_keep <= 40
    assert corner[first_blue:31] == [(0, 0, 255)] * (31 - first_blue)
    keep_corner = tuple(p.current.compositor.background[0, 0])
    assert corner[first_keep:] == [keep_corner] * (len(driver) - first_keep)
    assert p.background == Background()


@pytest.mark.fixtures
@pytest.mark.slow
def test_live_recording_shows_the_background(portraits_dir: Path, driving_dir: Path,
                                             tmp_path: Path) -> None:
    from live.jobs.build import build_pipeline

    record = tmp_path / "rec.mkv"
    cfg = LiveConfig(portrait=portraits_dir / "deepface_img1_smile_teeth.jpg",
                     driver=driving_dir / "lp_d3.mp4", width=640, height=360, vcam=False,
                     preview=False, duration=2.0, record=record,
                     background=Background.parse("green"))
    with build_pipeline(cfg, realtime=False, driver_size=(320, 320)) as p:
        p.run()
    frames = list(read_rgba(record, max_frames=10))
    assert frames
    for f in frames:
        for corner in _corners(f[:360, :640, :3]):
            assert np.abs(corner.astype(int) - GREEN).max() < 12  # H.264 of pure green


def _animate(tmp_path: Path, portraits_dir: Path, driving_dir: Path, output: str,
             background: str, portrait: str = "lp_s42.jpg", **extra: Any) -> Any:
    from live.jobs.animate import AnimateConfig, run_animate

    config = AnimateConfig(portraits_dir / portrait, driving_dir / "lp_d3.mp4",
                           tmp_path / output, background=Background.parse(background),
                           engine="mesh", max_frames=12, **extra)
    return run_animate(config, progress=False)


@pytest.mark.fixtures
@pytest.mark.slow
@pytest.mark.parametrize("output", ["out.webm", "out.mov"])
def test_animate_transparent_writes_alpha_editors_open(tmp_path: Path, portraits_dir: Path,
                                                       driving_dir: Path, output: str) -> None:
    report = _animate(tmp_path, portraits_dir, driving_dir, output, "transparent")
    assert report.frames == 12 and report.audio is not None
    info = probe_video(tmp_path / output)
    assert info.has_audio  # the driving video's sound, as without a background
    assert info.codec == ("vp9" if output.endswith(".webm") else "prores")
    frames = list(read_rgba(tmp_path / output))
    assert len(frames) == 12
    from live.face.portraits import find_faces, load_image

    image = load_image(portraits_dir / "lp_s42.jpg", max_size=1920)
    (lm,) = find_faces(image, max_faces=1)
    cx, cy = np.round(lm[:, :2].mean(axis=0)).astype(int)
    for f in frames:
        assert f[2, 2, 3] == 0  # a background corner: transparent
        assert f[cy, cx, 3] == 255  # the face: opaque
    assert (frames[-1][..., 3] == 0).mean() > 0.2


@pytest.mark.fixtures
@pytest.mark.slow
def test_animate_several_faces_share_one_matte(tmp_path: Path, portraits_dir: Path,
                                               driving_dir: Path) -> None:
    from live.face.portraits import find_faces, load_image

    report = _animate(tmp_path, portraits_dir, driving_dir, "group.mkv", "green",
                      portrait="multi_pg_fom_multi_person.jpg", multi_face=True)
    assert report.faces >= 3
    frames = list(read_rgba(tmp_path / "group.mkv"))
    image = load_image(portraits_dir / "multi_pg_fom_multi_person.jpg", max_size=1920)
    faces = find_faces(image, max_faces=report.faces)
    last = frames[-1][..., :3].astype(int)
    for lm in faces:  # every face is a person (not keyed out)
        cx, cy = np.round(lm[:, :2].mean(axis=0)).astype(int)
        assert np.abs(last[cy, cx] - GREEN).max() > 60
    green = (np.abs(last - GREEN).max(axis=2) < 20).mean()
    assert green > 0.2  # and the rest of the painting became the key colour


def test_the_plate_is_filled_at_the_side_asked_for(astronaut: np.ndarray) -> None:
    # plate_side only changes the fill behind the person: the matte bit for bit, the
    # picture's own pixels outside the filled region, a coarser fill inside it (a live
    # portrait's plate, only shown blurred, at PICTURE_PLATE_SIDE)
    from live.face.segmentation import prepare_layers

    fine = prepare_layers(astronaut)
    coarse = prepare_layers(astronaut, plate_side=64)
    assert fine is not None and coarse is not None
    np.testing.assert_array_equal(fine.matte, coarse.matte)
    from live.face.segmentation import PLATE_GROW

    away = cv2.distanceTransform((fine.matte <= 0.1).astype(np.uint8), cv2.DIST_L2, 5)
    own = away > PLATE_GROW * max(astronaut.shape[:2]) + 2  # beyond the grown person
    assert own.mean() > 0.2
    for plate in (fine.plate, coarse.plate):
        np.testing.assert_array_equal(plate[own], astronaut[own])
    person = fine.matte > 0.9
    apart = np.abs(fine.plate.astype(int) - coarse.plate)[person].mean()
    assert apart > 1.0  # the fills differ ...
    # ... the coarse one smoother: less of the fine fill's texture left in it
    lap = [float(np.abs(cv2.Laplacian(cv2.cvtColor(p, cv2.COLOR_RGB2GRAY), cv2.CV_32F))
                 [person].mean()) for p in (fine.plate, coarse.plate)]
    assert lap[1] < lap[0], lap


@pytest.mark.fixtures
def test_a_live_portrait_is_segmented_at_the_size_it_is_shown(
        portraits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import live.face.segmentation as seg
    from live.face.portraits import SEGMENT_DETAIL

    image = cv2.imread(str(portraits_dir / "deepface_img1_smile_teeth.jpg"))
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.resize(image, None, fx=3.0, fy=3.0))
    shapes: list[tuple[int, ...]] = []  # the pictures segmented (the engine's crop too)
    real = seg.prepare_layers

    def recording(image: np.ndarray, **kw: Any) -> Any:
        shapes.append(image.shape)
        return real(image, **kw)

    monkeypatch.setattr(seg, "prepare_layers", recording)
    library = _live_library([big], [Background.parse("green")])
    try:
        prepared = library.prepare(0)
        shown = prepared.compositor.framing.scale
        assert shown < 0.5
        h, w = prepared.portrait.image.shape[:2]
        at = (round(h * SEGMENT_DETAIL * shown), round(w * SEGMENT_DETAIL * shown))
        assert (*at, 3) in shapes
        # the layers stay at that size: the framing shows them at about their own
        assert prepared.layers.matte.shape == at
        assert prepared.compositor.still_matte is not None
    finally:
        library.close()
        library.engine.close()


@pytest.mark.fixtures
def test_a_live_portraits_layers_are_worked_out_beside_the_engines_preparation(
        portrait_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the whole picture's person and plate are segmented on a thread of their own while the
    # engine prepares the face (a 2-core machine's second core); the same layers as in turn,
    # and an error on either side reaches the caller with no thread left behind
    import threading

    import live.face.segmentation as segmentation
    from live.face.portraits import PICTURE_PLATE_SIDE, SEGMENT_DETAIL

    real = segmentation.prepare_layers
    seen: list[str] = []
    started = threading.Event()

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        started.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(segmentation, "prepare_layers", recording)
    library = _live_library([portrait_file], [Background.parse("green")])
    engine_prepare = library.engine.prepare

    def waiting(*args: Any, **kwargs: Any) -> Any:
        # the engine's preparation goes on only once the picture's layers have begun: in
        # turn, one after the other, it would wait here for ever
        assert started.wait(timeout=30.0), "the layers did not start beside the engine"
        return engine_prepare(*args, **kwargs)

    monkeypatch.setattr(library.engine, "prepare", waiting)
    try:
        prepared = library.prepare(0)
    finally:
        library.close()
    assert seen and seen[0].startswith("portrait-layers"), seen
    assert prepared.layers is not None
    image = prepared.portrait.image
    scale = min(1.0, SEGMENT_DETAIL * prepared.compositor.framing.scale)
    h, w = image.shape[:2]
    at = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = image if at == (w, h) else cv2.resize(image, at, interpolation=cv2.INTER_AREA)
    alone = real(small, plate_side=PICTURE_PLATE_SIDE)
    assert alone is not None
    np.testing.assert_array_equal(prepared.layers.matte, alone.matte)
    np.testing.assert_array_equal(prepared.layers.plate, alone.plate)

    def broken_layers(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("portrait-layers"):
            raise RuntimeError("segmentation broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(segmentation, "prepare_layers", broken_layers)
    before = threading.active_count()
    _prepare_fails(_live_library([portrait_file], [Background.parse("green")]),
                   RuntimeError, "segmentation broke")
    monkeypatch.setattr(segmentation, "prepare_layers", real)
    library = _live_library([portrait_file], [Background.parse("green")])

    def broken_engine(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("engine broke")

    monkeypatch.setattr(library.engine, "prepare", broken_engine)
    _prepare_fails(library, ValueError, "engine broke")
    assert threading.active_count() <= before


@pytest.mark.fixtures
def test_with_a_background_a_head_and_shoulders_photo_is_framed_down_to_the_bottom(
        portraits_dir: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # lp_s42 (a 512 px head-and-shoulders crop) framed shoulders ends 71 % of the way down
    # a 1280x720 output: in front of a background its person was a bust cut off in mid-air;
    # with one it is framed down to the bottom. Without a background, and for a photo with
    # room below the face, the framing is as before.
    import live.geometry as geometry

    caplog.set_level(logging.WARNING, logger="live.face.portraits")
    tight, half = portraits_dir / "lp_s42.jpg", portraits_dir / "deepface_img1_smile_teeth.jpg"
    framings = {}
    for path in (tight, half):
        for background in ("keep", "green"):
            library = _live_library([path], [Background.parse(background)])
            try:
                prepared = library.prepare(0)
            finally:
                library.close()
            framings[path.name, background] = prepared.compositor.placement
    keep, green = framings["lp_s42.jpg", "keep"], framings["lp_s42.jpg", "green"]
    assert keep.photo_rect[3] < 0.8 * 720  # before: the photo's bottom edge in mid-frame
    assert green.photo_rect[3] == 720 and green.offset[1] + green.resized[1] == 720
    assert green.scale > keep.scale
    assert np.array_equal(framings[half.name, "keep"].affine, framings[half.name, "green"].affine)
    assert not [r for r in caplog.records if "mid-air" in r.getMessage()]
    # where the photo cannot be framed down (here: made so), it is said once per picture
    monkeypatch.setattr(geometry, "REACH_EYES_LOWEST", 0.3)
    library = _live_library([tight], [Background.parse("green")])
    try:
        cut = library.prepare(0)
        library._cache.clear()
        library.prepare(0)
    finally:
        library.close()
    assert cut.compositor.placement.photo_rect[3] < 0.8 * 720
    said = [r for r in caplog.records if "mid-air" in r.getMessage()]
    assert len(said) == 1 and "lp_s42.jpg" in said[0].getMessage()
    assert "--framing full" in said[0].getMessage()


@pytest.mark.fixtures
def test_animate_with_a_framing_and_a_background_frames_the_person_down_to_the_bottom(
        tmp_path: Path, portraits_dir: Path, driving_dir: Path) -> None:
    # as mimicam live: lp_s42 framed shoulders in front of green reaches the video's bottom
    # (it ended 71 % of the way down, a bust in mid-air)
    _animate(tmp_path, portraits_dir, driving_dir, "framed.mkv", "green", framing="shoulders")
    frames = list(read_rgba(tmp_path / "framed.mkv"))
    assert frames
    last = frames[-1][..., :3].astype(int)
    h, w = last.shape[:2]
    bottom = last[h - 3, w // 2 - w // 16:w // 2 + w // 16]  # the middle of the bottom row
    assert (np.abs(bottom - GREEN).max(axis=1) > 60).all()  # the person, not the key colour
    assert (np.abs(last[2, 2] - GREEN).max()) < 12  # a corner: the key colour


@pytest.mark.fixtures
def test_a_live_portraits_backdrop_is_made_beside_its_compositor(
        portrait_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the blurred plate (the background's picture) is framed on a thread of its own while the
    # compositor frames the picture and its matte: the same layer as made in turn after it,
    # and an error there reaches the caller with no thread left behind
    import threading

    import live.face.portraits as portraits
    from live.background import layer_backdrop

    seen: list[str] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return layer_backdrop(*args, **kwargs)

    monkeypatch.setattr(portraits, "layer_backdrop", recording)
    blur = Background.parse("blur:4")
    library = _live_library([portrait_file], [blur])
    try:
        prepared = library.prepare(0)
    finally:
        library.close()
    assert len(seen) == 1 and seen[0].startswith("portrait-backdrop"), seen
    layer = prepared.backgrounds[blur]
    assert layer is not None and prepared.layers is not None
    in_turn = build_layer(blur, prepared.compositor, plate=prepared.layers.plate)
    assert in_turn is not None
    np.testing.assert_array_equal(layer.backdrop, in_turn.backdrop)
    np.testing.assert_array_equal(layer.still, in_turn.still)
    # keep paints nothing: no backdrop is made at all
    seen.clear()
    library = _live_library([portrait_file], [Background(), blur])
    try:
        assert library.prepare(0).backgrounds[Background()] is None
    finally:
        library.close()
    assert seen == []

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("backdrop broke")

    monkeypatch.setattr(portraits, "layer_backdrop", broken)
    before = threading.active_count()
    _prepare_fails(_live_library([portrait_file], [blur]), RuntimeError, "backdrop broke")
    assert threading.active_count() <= before


def test_a_layers_backdrop_framed_from_its_placement_is_the_compositors() -> None:
    # build_layer with a backdrop made beforehand (layer_backdrop, from the compositor's
    # placement alone) gives the layer it makes itself, for a framing and the letterbox
    plate = np.zeros((800, 600, 3), np.uint8)
    plate[:, :300] = (30, 140, 200)
    plate[400:] = (220, 60, 90)
    for framing in ("shoulders", "full"):
        comp, _ = _synthetic_compositor(framing)
        for background in (Background("blur", strength=2.0), Background.parse("green")):
            made = layer_backdrop(background, comp.placement, plate=plate)
            itself = build_layer(background, comp, plate=plate)
            given = build_layer(background, comp, backdrop=made)
            assert itself is not None and given is not None
            np.testing.assert_array_equal(given.backdrop, itself.backdrop)
            np.testing.assert_array_equal(given.still, itself.still)
        with pytest.raises(ValueError, match="needs the portrait's plate"):
            layer_backdrop(Background("blur"), comp.placement)
    assert Background("blur").paints and Background.parse("green").paints
    assert not Background().paints and not Background("transparent").paints
