"""Framing for calls (issue #16): the portrait cut around its face like a webcam picture
(``shoulders``, ``head``) or letterboxed (``full``, today's output bit for bit); the photo's
edge extended where the output shows more; the face of a group photo; ``portraits.toml``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from calibrate.errors import InputError
from live.compose import Compositor, ellipse_mask
from live.config import LiveConfig, load_toml
from live.face.framing import (
    PortraitOptions,
    eye_line,
    face_box,
    pick_face,
    read_portrait_options,
)
from live.geometry import (
    MAX_CLEAN_UPSCALE,
    REACH_EYES_LOWEST,
    apply_affine,
    compose_affine,
    covered_region,
    frame_matte,
    frame_picture,
    framed_output_size,
    framing_transform,
    letterbox,
    letterbox_transform,
    offset_affine,
)
from live.io.overlay import draw_pose_guide

OUT = (1280, 720)


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, non-trivial RGB picture without black."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 180 + 40, y / h * 160 + 50, (x + y) / (w + h) * 120 + 70], -1)
    for _ in range(10):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 80)
        img += (np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
                * rng.uniform(-40, 40, 3))
    return np.clip(img, 30, 255).astype(np.uint8)


def _todays_compose(portrait: np.ndarray, crop_to_portrait: np.ndarray, crop: np.ndarray | None,
                    size: tuple[int, int], feather: float) -> np.ndarray:
    """What mimicam live sent before framings existed: the portrait letterboxed, the crop
    warped into its region and blended through the feathered ellipse (written out here)."""
    h, w = portrait.shape[:2]
    out = letterbox(portrait, size)
    if crop is None:
        return out
    m = compose_affine(letterbox_transform((w, h), size), crop_to_portrait)
    n = crop.shape[0]
    roi = covered_region(m, n, n, *size)
    assert roi is not None
    x0, y0, x1, y1 = roi
    local = offset_affine(m, x0, y0)
    alpha = cv2.warpAffine(ellipse_mask(n, feather=feather), local, (x1 - x0, y1 - y0),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0.0,))
    warped = cv2.warpAffine(crop, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    region = out[y0:y1, x0:x1]
    region[...] = cv2.blendLinear(warped, region, alpha, 1.0 - alpha)
    return out


def _mapped_box(box: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return apply_affine(np.asarray(box, np.float64).reshape(2, 2), affine).ravel()


# -- the transform ----------------------------------------------------------------------------


def test_full_is_the_letterbox() -> None:
    fr = framing_transform(None, (720, 1280), OUT, "full")
    assert (fr.affine == letterbox_transform((720, 1280), OUT)).all()
    image = _scene(1280, 720)
    assert (frame_picture(image, fr) == letterbox(image, OUT)).all()
    assert fr.padded and fr.photo_rect[1::2] == (0, 720)


@pytest.mark.parametrize(("mode", "share"), [("shoulders", 1 / 3), ("head", 1 / 2)])
def test_the_face_a_share_of_the_height_centred_eyes_40_percent_down(mode: str,
                                                                      share: float) -> None:
    # a 3000x2000 photo with a 400 px face in the middle: room all round, no upscaling
    box = (1300.0, 700.0, 1700.0, 1100.0)
    fr = framing_transform(box, (3000, 2000), OUT, mode, eyes_y=830.0)  # type: ignore[arg-type]
    x0, y0, x1, y1 = _mapped_box(np.array(box), fr.affine)
    assert (y1 - y0) / 720 == pytest.approx(share, abs=0.005)
    assert (x0 + x1) / 2 == pytest.approx(639.5, abs=1.0)
    eye = apply_affine(np.array([[1500.0, 830.0]]), fr.affine)[0, 1]
    assert (eye + 0.5) / 720 == pytest.approx(0.40, abs=0.003)
    assert not fr.padded and fr.scale < 1
    # the affine is the picture's own: a marked portrait pixel lands where it says
    image = _scene(2000, 3000)
    image[895:906, 1495:1506] = (255, 0, 0)
    out = frame_picture(image, fr)
    ys, xs = np.nonzero((out[..., 0] > 200) & (out[..., 1] < 80))
    assert (xs.mean(), ys.mean()) == pytest.approx(tuple(apply_affine(
        np.array([[1500.0, 900.0]]), fr.affine)[0]), abs=0.6)


def test_the_face_moves_a_little_to_keep_inside_the_photo() -> None:
    # the face near the photo's top: the eye line goes up (33 % at most) instead of padding
    box = (900.0, 60.0, 1100.0, 260.0)
    fr = framing_transform(box, (2000, 1500), OUT, "shoulders", eyes_y=126.0)
    eye = apply_affine(np.array([[1000.0, 126.0]]), fr.affine)[0, 1]
    assert 0.33 <= (eye + 0.5) / 720 < 0.40
    assert fr.offset[1] == 0 or (eye + 0.5) / 720 == pytest.approx(0.33, abs=0.003)
    # near the left edge: at most 3 % of the width off centre
    fr = framing_transform((20.0, 700.0, 220.0, 900.0), (2000, 1500), OUT, "shoulders")
    cx = _mapped_box(np.array([20.0, 700.0, 220.0, 900.0]), fr.affine)[::2].mean()
    assert abs(cx - 639.5) <= 0.03 * 1280 + 1
    assert fr.padded  # still: the face is too close to the edge


def test_no_zoom_past_clean_upscaling() -> None:
    # a 100 px face in a 1200x900 picture: shoulders wants 2.4x, the framing stops at 1.5x
    fr = framing_transform((550.0, 400.0, 650.0, 500.0), (1200, 900), OUT, "shoulders")
    assert fr.scale == pytest.approx(MAX_CLEAN_UPSCALE, abs=0.01)
    # a tiny portrait may be upscaled as far as its letterbox would be, to frame its face
    fr = framing_transform((60.0, 60.0, 196.0, 206.0), (256, 256), OUT, "head")
    assert fr.scale == pytest.approx(0.5 * 720 / 146, abs=0.01) and fr.scale < 720 / 256


def test_reach_bottom_frames_a_head_and_shoulders_crop_down_to_the_outputs_bottom() -> None:
    # a 512x512 crop with a 240 px face: framed shoulders it ends above the output's bottom
    # (a person cut off in mid-air in front of a background)
    box, eyes = (156.0, 100.0, 356.0, 340.0), 190.0
    plain = framing_transform(box, (512, 512), OUT, "shoulders", eyes_y=eyes)
    assert plain.offset[1] + plain.resized[1] < 700
    fr = framing_transform(box, (512, 512), OUT, "shoulders", eyes_y=eyes, reach_bottom=True)
    assert fr.offset[1] + fr.resized[1] == 720 and fr.photo_rect[3] == 720
    assert fr.scale > plain.scale  # zoomed in: the face framed larger than a third
    eye = apply_affine(np.array([[256.0, eyes]]), fr.affine)[0, 1]
    assert (eye + 0.5) / 720 == pytest.approx(0.45, abs=0.003)  # as low as the slack goes
    cx = _mapped_box(np.array(box), fr.affine)[::2].mean()
    assert cx == pytest.approx(639.5, abs=1.0)
    # the face lower in its crop: as high as the output, the eyes where the photo has them
    low = framing_transform((156.0, 180.0, 356.0, 420.0), (512, 512), OUT, "shoulders",
                            eyes_y=270.0, reach_bottom=True)
    assert low.offset[1] == 0 and low.resized[1] == 720
    eye = apply_affine(np.array([[256.0, 270.0]]), low.affine)[0, 1]
    assert 0.45 < (eye + 0.5) / 720 <= REACH_EYES_LOWEST
    # lower still: left where it was (a face at the bottom of the frame is no better)
    args = ((156.0, 240.0, 356.0, 480.0), (512, 512), OUT, "shoulders")
    lower = framing_transform(*args, eyes_y=330.0)  # type: ignore[arg-type]
    assert lower.offset[1] + lower.resized[1] < 720
    assert np.array_equal(framing_transform(*args, eyes_y=330.0,  # type: ignore[arg-type]
                                            reach_bottom=True).affine, lower.affine)
    # a photo with room below the face is framed as without
    big = ((1300.0, 700.0, 1700.0, 1100.0), (3000, 2000))
    assert np.array_equal(framing_transform(*big, OUT, "shoulders", eyes_y=830.0).affine,
                          framing_transform(*big, OUT, "shoulders", eyes_y=830.0,
                                            reach_bottom=True).affine)


def test_bad_framings_are_refused() -> None:
    with pytest.raises(ValueError, match="framing"):
        framing_transform((0, 0, 1, 1), (10, 10), OUT, "waist")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="face_box"):
        framing_transform(None, (10, 10), OUT, "head")
    with pytest.raises(ValueError, match="face_box"):
        framing_transform((0, 5, 10, 5), (10, 10), OUT, "head")


def test_the_extended_edge_is_the_blurred_photo_not_black() -> None:
    image = _scene(500, 400, seed=2)
    fr = framing_transform((150.0, 100.0, 250.0, 220.0), (400, 500), OUT, "shoulders")
    assert fr.padded
    out = frame_picture(image, fr)
    assert out.shape == (720, 1280, 3)
    assert out.reshape(-1, 3).max(axis=1).min() > 20  # nowhere black
    # inside the photo: the resized photo itself, untouched by the blur
    x0, y0, x1, y1 = fr.photo_rect
    resized = cv2.resize(image, fr.resized, interpolation=cv2.INTER_LANCZOS4
                         if fr.scale > 1 else cv2.INTER_AREA)
    ox, oy = fr.offset
    assert (out[y0:y1, x0:x1] == resized[y0 - oy:y1 - oy, x0 - ox:x1 - ox]).all()
    # outside: smooth (blurred), continuing the photo's colours at its edge (no seam)
    left = out[:, :max(x0 - 40, 1)].astype(np.float32)
    assert np.abs(np.diff(left, axis=1)).mean() < 1.0
    seam = np.abs(out[y0:y1, x0].astype(int) - out[y0:y1, x0 - 1].astype(int)).mean()
    assert seam < 6


def test_a_copy_at_another_size_lands_where_the_portrait_does() -> None:
    # a person matte or plate worked out smaller than the picture is framed from its own
    # pixels: the same place in the output as the picture, about the same pixels
    image = _scene(1000, 800, seed=3)
    matte = np.zeros((1000, 800), np.float32)
    matte[300:, 200:600] = 1.0
    for mode, box in (("shoulders", (300.0, 200.0, 500.0, 440.0)), ("full", None)):
        fr = framing_transform(box, (800, 1000), OUT, mode)  # type: ignore[arg-type]
        small_size = (round(800 * fr.scale), round(1000 * fr.scale))
        small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
        small_matte = cv2.resize(matte, small_size, interpolation=cv2.INTER_AREA)
        big_out, small_out = frame_picture(image, fr), frame_picture(small, fr)
        assert small_out.shape == big_out.shape
        apart = np.abs(big_out.astype(int) - small_out.astype(int))
        assert apart.mean() < 1.5, (mode, apart.mean())
        framed, framed_small = frame_matte(matte, fr), frame_matte(small_matte, fr)
        # the matte's edge in the same place (a row and a column of its rounding)
        assert np.abs(framed.astype(int) - framed_small.astype(int)).mean() < 1.5
        x0, y0, x1, y1 = fr.photo_rect
        if mode == "full":  # black bars, exactly where the portrait's are
            assert not small_out[:, :x0].any() and not small_out[:, x1:].any()
            assert small_out[y0:y1, x0:x1].reshape(-1, 3).max(axis=1).min() > 0
        # another aspect is not a copy of the portrait
        with pytest.raises(ValueError, match="a copy of it at another size"):
            frame_picture(np.zeros((500, 500, 3), np.uint8), fr)
        with pytest.raises(ValueError, match="a copy of it at another size"):
            frame_matte(np.zeros((500, 500), np.uint8), fr)


def test_the_extended_edge_is_worked_out_band_by_band_as_over_the_whole_frame() -> None:
    # frame_picture mixes only the bands beyond the photo, each blurred with enough of the
    # frame round it: the mix of whole-frame blurs (within the level the blurs' reduced
    # sizes, aligned to each band, round differently), the photo's own pixels bit for bit,
    # with the photo on every side of the frame or on some
    from live.geometry import blur

    image = _scene(500, 400, seed=5)
    for box in ((150.0, 100.0, 250.0, 220.0), (20.0, 30.0, 140.0, 170.0),
                (300.0, 380.0, 390.0, 490.0)):
        fr = framing_transform(box, (400, 500), OUT, "shoulders")
        assert fr.padded
        out = frame_picture(image, fr)
        ow, oh = OUT
        x0, y0, x1, y1 = fr.photo_rect
        ox, oy = fr.offset
        resized = cv2.resize(image, fr.resized, interpolation=cv2.INTER_LANCZOS4
                             if fr.scale > 1 else cv2.INTER_AREA)
        whole = cv2.copyMakeBorder(resized[y0 - oy:y1 - oy, x0 - ox:x1 - ox], y0, oh - y1,
                                   x0, ow - x1, cv2.BORDER_REFLECT_101)
        cols, rows = np.arange(ow), np.arange(oh)
        d = np.hypot(np.maximum(np.maximum(y0 - rows, rows - (y1 - 1)), 0)[:, None],
                     np.maximum(np.maximum(x0 - cols, cols - (x1 - 1)), 0)[None, :]
                     ).astype(np.float32)

        def step(x: np.ndarray) -> np.ndarray:
            x = np.clip(x, 0.0, 1.0)
            return x * x * (3.0 - 2.0 * x)

        near, far = step(d / (0.02 * oh))[..., None], step(d / (0.2 * oh))[..., None]
        ext = (blur(whole, 0.015 * oh).astype(np.float32) * (1.0 - far)
               + blur(whole, 0.1 * oh).astype(np.float32) * far) * (1.0 - 0.25 * far)
        expected = np.clip(whole.astype(np.float32) * (1.0 - near) + ext * near + 0.5,
                           0, 255).astype(np.uint8)
        np.testing.assert_array_equal(out[y0:y1, x0:x1], expected[y0:y1, x0:x1])
        assert int(np.abs(out.astype(int) - expected).max()) <= 2


def test_framed_output_size_keeps_the_pictures_resolution() -> None:
    assert framed_output_size(240, "shoulders") == (1280, 720)
    assert framed_output_size(360, "head") == (1280, 720)
    assert framed_output_size(1000, "shoulders", max_width=1920) == (1920, 1080)
    w, h = framed_output_size(50, "shoulders")
    assert h == 360 and w % 2 == 0 and h % 2 == 0
    with pytest.raises(ValueError):
        framed_output_size(100, "full")


# -- the compositor ---------------------------------------------------------------------------


def test_full_compositor_is_todays_output_bit_for_bit() -> None:
    from live.geometry import crop_square

    portrait = _scene(640, 360, seed=5)
    crop = crop_square(portrait, (180.0, 200.0), 150.0, 128)
    fr = framing_transform(None, (360, 640), (640, 360), "full")
    fixed = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    for framing in (None, fr):
        comp = Compositor(portrait, crop.crop_to_frame, 128, (640, 360), feather=0.03,
                          framing=framing)
        for c in (None, fixed, crop.image):
            ref = _todays_compose(portrait, crop.crop_to_frame, c, (640, 360), 0.03)
            assert (comp.compose(c) == ref).all()


def test_framed_compositor_pastes_only_inside_the_photo() -> None:
    from live.geometry import crop_square

    portrait = _scene(300, 300, seed=7)
    # a face crop reaching past the photo's left edge
    crop = crop_square(portrait, (60.0, 150.0), 200.0, 128)
    fr = framing_transform((20.0, 100.0, 100.0, 200.0), (300, 300), (640, 360), "shoulders")
    comp = Compositor(portrait, crop.crop_to_frame, 128, (640, 360), feather=0.03,
                      framing=fr)
    assert (comp.compose(None) == frame_picture(portrait, fr)).all()
    white = np.full((128, 128, 3), 255, np.uint8)
    out = comp.compose(white)
    changed = np.any(out != comp.background, axis=-1)
    x0, y0, x1, y1 = fr.photo_rect
    inside = np.zeros_like(changed)
    inside[y0:y1, x0:x1] = True
    assert changed[inside].any()
    # beyond the photo only the extension's mirror image next to its edge follows what was
    # pasted there (the crop's made-up border itself is never pasted)
    from live.geometry import EXTENSION_SHARP, extension_blend

    reach = int(np.ceil(EXTENSION_SHARP * 360))
    ys, xs = np.nonzero(changed & ~inside)
    assert len(xs) and xs.min() >= x0 - reach and xs.max() < x0
    assert ys.min() >= y0 and ys.max() < y1
    mirrored = out[y0:y1, x0 - 1].astype(int) - comp.background[y0:y1, x0 - 1].astype(int)
    pasted = out[y0:y1, x0 + 1].astype(int) - comp.background[y0:y1, x0 + 1].astype(int)
    share = 1.0 - float(extension_blend(np.float32(1.0), 360))  # the plain mirror's there
    np.testing.assert_allclose(mirrored, share * pasted, atol=1.5)  # the first column
    assert comp.portrait_to_output is fr.affine


@pytest.mark.parametrize("mode", ["shoulders", "head"])
def test_framed_paste_of_an_unchanged_crop_restores_the_picture(mode: str) -> None:
    """The framed paste puts the crop at whole pixels (a resize, fast): it still lands on the
    portrait's own pixels, so the still face shows no seam or shift."""
    from _live_fakes import psnr

    from live.geometry import crop_square

    portrait = _scene(900, 700, seed=11)
    box = (250.0, 250.0, 450.0, 480.0)
    for side, size in ((420.0, 256), (415.3, 512)):
        crop = crop_square(portrait, (350.0, 360.0), side, size)
        fr = framing_transform(box, (700, 900), OUT, mode)  # type: ignore[arg-type]
        comp = Compositor(portrait, crop.crop_to_frame, size, OUT, feather=0.03, framing=fr)
        out = comp.compose(crop.image)
        assert psnr(out, comp.background) > 36
        exact = compose_affine(fr.affine, crop.crop_to_frame)
        corners = np.array([[0.0, 0.0], [size - 1.0, size - 1.0]])
        assert np.abs(apply_affine(corners, comp.crop_to_output)
                      - apply_affine(corners, exact)).max() <= 1.0


def test_pose_guide_follows_the_framing() -> None:
    lm = np.zeros((478, 3), np.float32)
    angles = np.linspace(0, 2 * np.pi, 478)
    lm[:, 0] = 1000 + 100 * np.cos(angles)
    lm[:, 1] = 800 + 150 * np.sin(angles)
    from live.io.overlay import face_outline

    outline = face_outline(lm)
    box = face_box(lm)
    fr = framing_transform(box, (2000, 2000), OUT, "shoulders")
    cam = np.zeros((480, 640, 3), np.uint8)
    out = draw_pose_guide(cam, outline, (2000, 2000), portrait_to_output=fr.affine,
                          output_size=OUT)
    ys, xs = np.nonzero(out[..., 1] > 150)
    # the output's face is a third of 720 px, centred; the camera is letterboxed into the
    # output at 1.5x (640x480 -> 960x720): a third of the camera's height, centred
    assert (ys.max() - ys.min()) / 480 == pytest.approx(1 / 3, abs=0.02)
    assert (xs.max() + xs.min()) / 2 == pytest.approx(319.5, abs=3)


# -- real portraits ---------------------------------------------------------------------------


class _StillEngine:
    """An engine that returns one fixed crop (the compositing is what is under test)."""

    name = "still"

    def __init__(self, size: int = 256, seed: int = 3) -> None:
        self.size = size
        self.crop = np.random.default_rng(seed).integers(0, 256, (size, size, 3),
                                                          dtype=np.uint8)

    def prepare(self, crop: np.ndarray, **_: Any) -> np.ndarray:
        return crop

    def set_portrait(self, prepared: Any) -> None:
        pass

    def calibrate(self, neutral: Any) -> None:
        pass

    def recalibrate(self) -> None:
        pass

    def process(self, face: Any, t: float) -> np.ndarray:
        return self.crop

    def close(self) -> None:
        pass


def _library(paths: list[Path], **kw: Any) -> Any:
    from live.face.portraits import PortraitLibrary

    return PortraitLibrary(paths, _StillEngine(), output_size=OUT,  # type: ignore[arg-type]
                           **kw)


HALF_BODY = ("lp_s9_mona_lisa.jpg", "lp_s2_bw_photo.jpg", "deepface_img1_smile_teeth.jpg")


@pytest.mark.fixtures
@pytest.mark.parametrize("name", HALF_BODY)
def test_shoulders_frames_a_half_body_photo_like_a_webcam(portraits_dir: Path,
                                                          name: str) -> None:
    with _library([portraits_dir / name], framing="shoulders") as lib:
        prepared = lib.prepare(0)
    comp = prepared.compositor
    x0, y0, x1, y1 = _mapped_box(face_box(prepared.portrait.landmarks), comp.portrait_to_output)
    assert 0.25 <= (y1 - y0) / 720 <= 0.40
    assert abs((x0 + x1) / 2 - 639.5) <= 0.05 * 1280
    eye = apply_affine(np.array([[0.0, eye_line(prepared.portrait.landmarks)]]),
                       comp.portrait_to_output)[0, 1]
    assert 0.33 <= (eye + 0.5) / 720 <= 0.45
    out = comp.compose(lib.engine.crop)
    assert out.shape == (720, 1280, 3)
    grey = out.max(axis=-1)
    assert grey.max(axis=0).min() > 24 and grey.max(axis=1).min() > 24  # no black column/row
    assert comp.compose(None).max(axis=-1).max(axis=0).min() > 24


@pytest.mark.fixtures
@pytest.mark.parametrize("name", (*HALF_BODY, "pg_fom_source_image.png"))
def test_full_reproduces_todays_output_exactly(portraits_dir: Path, name: str) -> None:
    with _library([portraits_dir / name], framing="full", feather=0.03) as lib:
        prepared = lib.prepare(0)
    p = prepared.portrait
    for crop in (None, lib.engine.crop, p.crop.image):
        ref = _todays_compose(p.image, p.crop.crop_to_frame, crop, OUT, 0.03)
        assert (prepared.compositor.compose(crop) == ref).all()


@pytest.mark.fixtures
def test_a_tiny_portrait_is_upscaled_and_that_is_logged_once(
        portraits_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="live.face.portraits")
    with _library([portraits_dir / "pg_fom_source_image.png"], framing="shoulders",
                  max_cached=1) as lib:
        first = lib.prepare(0)
        lib._cache.clear()  # prepared again (e.g. after the cache let it go)
        lib.prepare(0)
    upscaled = [r for r in caplog.records if "upscaled" in r.getMessage()]
    assert len(upscaled) == 1
    assert "pg_fom_source_image.png" in upscaled[0].getMessage()
    fr = first.compositor.framing
    assert fr is not None and fr.scale > 1.5 and fr.padded
    _, y0, _, y1 = _mapped_box(face_box(first.portrait.landmarks), fr.affine)
    assert (y1 - y0) / 720 == pytest.approx(1 / 3, abs=0.01)
    # the blurred photo all round, not black bars
    assert first.compositor.background.max(axis=-1).max(axis=0).min() > 24


@pytest.mark.fixtures
def test_a_group_photo_frames_the_chosen_face(portraits_dir: Path) -> None:
    from live.face.portraits import find_faces

    path = portraits_dir / "multi_pg_fom_multi_person.jpg"
    with _library([path], framing="head") as lib:
        largest = lib.prepare(0)
    with _library([path], framing="head", face=3) as lib:
        third = lib.prepare(0)
    faces = find_faces(largest.portrait.image, max_faces=20)
    assert len(faces) >= 4
    assert np.allclose(third.portrait.landmarks, pick_face(faces, 3))
    for prepared in (largest, third):
        x0, _, x1, _ = _mapped_box(face_box(prepared.portrait.landmarks),
                                   prepared.compositor.portrait_to_output)
        assert abs((x0 + x1) / 2 - 639.5) <= 0.05 * 1280 + 1  # that face in the middle
        # the animated crop is that face's
        crop_centre = apply_affine(np.array([[127.5, 127.5]]),
                                   prepared.compositor.crop_to_output)[0]
        assert x0 < crop_centre[0] < x1
    assert abs(third.portrait.landmarks[:, 0].mean()
               - largest.portrait.landmarks[:, 0].mean()) > 50  # a different face
    with pytest.raises(InputError, match="no face 30"), _library([path], face=30) as lib:
        lib.prepare(0)


@pytest.mark.fixtures
def test_portraits_toml_sets_framing_and_face_per_picture(
        portraits_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from live.face.portraits import portrait_paths

    for name in ("lp_s42.jpg", "multi_pg_fom_multi_person.jpg"):
        (tmp_path / name).symlink_to(portraits_dir / name)
    (tmp_path / "portraits.toml").write_text(
        '["lp_s42.jpg"]\nframing = "full"\n\n'
        '["multi_pg_fom_multi_person.jpg"]\nface = 2\n\n'
        '["gone.jpg"]\nframing = "head"\n')
    paths = portrait_paths(tmp_path)
    with caplog.at_level(logging.WARNING):
        options = read_portrait_options(tmp_path, [p.name for p in paths])
    assert options == {"lp_s42.jpg": PortraitOptions(framing="full"),
                       "multi_pg_fom_multi_person.jpg": PortraitOptions(face=2)}
    assert "gone.jpg" in caplog.text
    with _library(paths, framing="shoulders", options=options) as lib:
        modes = {p.name: lib.prepare(i).compositor.framing.mode for i, p in enumerate(paths)}
        group = lib.prepare([p.name for p in paths].index("multi_pg_fom_multi_person.jpg"))
    assert modes == {"lp_s42.jpg": "full", "multi_pg_fom_multi_person.jpg": "shoulders"}
    from live.face.portraits import find_faces

    second = pick_face(find_faces(group.portrait.image, max_faces=20), 2)
    assert np.allclose(group.portrait.landmarks, second)


def test_portraits_toml_is_strict(tmp_path: Path) -> None:
    assert read_portrait_options(tmp_path) == {}
    toml = tmp_path / "portraits.toml"
    toml.write_text('["a.jpg"]\nframing = "waist"\n')
    with pytest.raises(InputError, match=r"portraits.toml.*a.jpg.framing") as err:
        read_portrait_options(tmp_path)
    # the three framings named, not the types ("Literal or NoneType")
    assert "expected 'shoulders' | 'head' | 'full'; got 'waist'" in str(err.value)
    toml.write_text('["a.jpg"]\nzoom = 2\n')
    with pytest.raises(InputError, match=r"unknown config key.*a.jpg.zoom"):
        read_portrait_options(tmp_path)
    toml.write_text('framing = "head"\n')
    with pytest.raises(InputError, match="not a picture's table"):
        read_portrait_options(tmp_path)
    toml.write_text('["a.jpg"]\nface = 0\n')
    with pytest.raises(InputError, match="face"):
        read_portrait_options(tmp_path)


# -- settings and flags -----------------------------------------------------------------------


def test_live_framing_flags_and_settings(tmp_path: Path) -> None:
    from live.cli.live import config_from_args
    from live.cli.main import build_parser

    def args(*argv: str) -> LiveConfig:
        return config_from_args(build_parser().parse_args(["live", *argv]))

    assert LiveConfig().framing == "shoulders" and LiveConfig().face is None
    cfg = args("--framing", "head", "--face", "2")
    assert (cfg.framing, cfg.face) == ("head", 2)
    with pytest.raises(SystemExit):
        args("--framing", "waist")
    with pytest.raises(SystemExit):
        args("--face", "0")
    toml = tmp_path / "live.toml"
    toml.write_text('framing = "full"\nface = 3\n')
    assert (load_toml(toml, LiveConfig).framing, load_toml(toml, LiveConfig).face) == ("full", 3)
    assert args("--config", str(toml), "--framing", "head").framing == "head"
    toml.write_text('framing = "waist"\n')
    with pytest.raises(InputError, match="framing"):
        load_toml(toml, LiveConfig)


def test_animate_takes_framing_and_keeps_the_full_picture_by_default(tmp_path: Path) -> None:
    from live.cli.animate import config_from_args
    from live.cli.main import build_parser
    from live.jobs.animate import AnimateConfig

    base = ["animate", "--source-image", "p.jpg", "--driving-video", "d.mp4", "-o",
            str(tmp_path / "o.mp4")]
    assert config_from_args(build_parser().parse_args(base)).framing == "full"
    cfg = config_from_args(build_parser().parse_args([*base, "--framing", "shoulders"]))
    assert cfg.framing == "shoulders"
    with pytest.raises(InputError, match="framing"):
        AnimateConfig("p.jpg", "d.mp4", "o.mp4", framing="waist")  # type: ignore[arg-type]


@pytest.mark.fixtures
def test_every_output_shows_the_same_framing(portraits_dir: Path) -> None:
    """The virtual camera, the MJPEG stream and the recorder are sinks of one frame, the
    preview window shows that frame too: all of them get the framed picture."""
    from _live_fakes import ListSource, RecordingSink

    from live.jobs.pipeline import LivePipeline
    from live.packets import Frame, Tracked

    class NoFaceTracker:
        def process(self, frame: Frame) -> Tracked:
            return Tracked(frame, None)

        def close(self) -> None:
            pass

    class Window:
        name = "preview"

        def __init__(self) -> None:
            self.frames: list[np.ndarray] = []

        def send(self, image: np.ndarray, t: float) -> None:
            self.frames.append(image)

        def poll_key(self) -> int:
            return -1

        def close(self) -> None:
            pass

    lib = _library([portraits_dir / "lp_s9_mona_lisa.jpg"], framing="head")
    engine = lib.engine
    config = LiveConfig(width=OUT[0], height=OUT[1], vcam=False, preview=True, overlay=False,
                        framing="head")
    sink, window = RecordingSink(), Window()
    frames = [np.full((120, 160, 3), 90, np.uint8)] * 5
    with LivePipeline(config, source=ListSource(frames), tracker=NoFaceTracker(),
                      engine=engine, library=lib, sinks=[sink],
                      preview=window) as pipeline:  # type: ignore[arg-type]
        pipeline.run(duration=10.0)
        comp = pipeline.current.compositor
    assert comp.framing is not None and comp.framing.mode == "head"
    expected = comp.compose(engine.crop)
    assert len(sink.frames) == len(window.frames) == 5
    for sent, shown in zip(sink.frames, window.frames, strict=True):
        assert (sent == expected).all() and (shown == expected).all()


@pytest.mark.fixtures
def test_animate_with_a_framing_writes_the_framed_video(portraits_dir: Path, driving_dir: Path,
                                                        tmp_path: Path) -> None:
    from live.io.video import VideoReader, probe_video
    from live.jobs.animate import AnimateConfig, run_animate

    out = tmp_path / "framed.mp4"
    report = run_animate(AnimateConfig(portraits_dir / "lp_s9_mona_lisa.jpg",
                                       driving_dir / "lp_d18.mp4", out, engine="mesh",
                                       framing="shoulders", max_frames=3), progress=False)
    w, h = report.size
    assert abs(w / h - 16 / 9) < 0.01 and w % 2 == 0 and h % 2 == 0
    assert 600 <= h <= 760  # the painting's own resolution: its 229 px face a third of it
    assert probe_video(out).size == (w, h)
    with VideoReader(out) as reader:
        last = [f.image for f in reader][-1]
    assert last.max(axis=-1).max(axis=0).min() > 24  # the painting's edge extended, no bars
