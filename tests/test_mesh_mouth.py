"""The mesh engine's mouth interior (live.engines.mesh.mouth): rigid teeth, the driving face's
interior carried over and colour-matched, lopsided openings, the fallbacks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrate import landmarks as lm
from live.engines.mesh import mouth as mouth_module
from live.engines.mesh.mouth import (
    CORNER_TAPER,
    INTERIOR_CHROMA,
    LIP_EDGE_MAX,
    MAX_GUM_SHOW,
    PURSED_DARKEST,
    MouthStyle,
    fill_mouth,
    is_portrait,
    jaw_anchors,
    limit_lip_retraction,
    lip_seam,
    lip_shade,
    lower_lip_edge,
    match_colours,
    mouth_style,
    open_lip_seam,
    polygon_area,
    prepare_mouth,
    pursed_shade,
    render_mouth,
    seam_shares,
    synthetic_mouth,
    transplant_mouth,
)

SIZE = 240
CENTRE = (120.0, 150.0)
HALF_WIDTH = 60.0


def _middle(points: np.ndarray) -> np.ndarray:
    """Which inner upper lip points (corners aside) the retraction limit holds fully: at
    least CORNER_TAPER of the mouth's width in from either corner."""
    up = points[list(lm.LIPS_INNER_UPPER), :2]
    across = up[-1] - up[0]
    width = float(np.hypot(*across))
    along = ((up[1:-1] - up[0]) @ (across / width)) / width
    return np.asarray(np.minimum(along, 1.0 - along) >= CORNER_TAPER)


def inner_lips(up: float, down: float, *, centre: tuple[float, float] = CENTRE,
               half_width: float = HALF_WIDTH, shape: float = 0.35,
               lopsided: bool = False) -> np.ndarray:
    """An inner-lip polygon (20, 2) in LIPS_INNER order: the upper lip ``up`` px above the
    mouth line at the middle, the lower one ``down`` px below (boxy for ``shape`` < 1);
    ``lopsided``: the opening grows from nothing at corner 0 to ``down`` at corner 10."""
    cx, cy = centre
    u = np.linspace(0.0, 1.0, 11)
    x = cx - half_width + 2.0 * half_width * u
    bulge = np.sin(np.pi * u) ** shape
    upper = np.stack([x, cy - up * bulge], 1)
    lower_open = down * (u ** 1.2 * np.sin(np.pi * np.minimum(u * 0.55 + 0.45, 1.0)) ** 0.3
                         / 0.9 if lopsided else bulge)
    lower = np.stack([x, cy + lower_open], 1)
    lower[-1] = upper[-1]
    lower[0] = upper[0]
    return np.concatenate([upper, lower[-2:0:-1]])


def landmarks_for(inner: np.ndarray) -> np.ndarray:
    """A face mesh (478, 3) with the landmark sets the mouth code reads: inner and outer
    lips, eyes, brows, the face oval."""
    pts = np.zeros((478, 3))
    pts[:, :2] = CENTRE
    pts[list(lm.LIPS_INNER), :2] = inner
    cx, cy = inner[[0, 10]].mean(axis=0)
    half = np.linalg.norm(inner[10] - inner[0]) / 2
    a = np.linspace(0.0, 2.0 * np.pi, 20, endpoint=False)
    # Outer lips: an ellipse around the opening, corners first (matching LIPS_OUTER's order).
    top = inner[:, 1].min() - 12.0
    bottom = inner[:, 1].max() + 14.0
    ox = cx - (half + 6.0) * np.cos(np.pi * np.linspace(0, 1, 11))
    upper = np.stack([ox, cy - (cy - top) * np.sin(np.pi * np.linspace(0, 1, 11))], 1)
    lower = np.stack([ox, cy + (bottom - cy) * np.sin(np.pi * np.linspace(0, 1, 11))], 1)
    pts[list(lm.LIPS_OUTER), :2] = np.concatenate([upper, lower[-2:0:-1]])
    for eye, ex in ((lm.RIGHT_EYE, cx - 45.0), (lm.LEFT_EYE, cx + 45.0)):
        pts[list(eye), :2] = np.stack([ex + 18 * np.cos(a[:16] * 20 / 16),
                                       cy - 90 + 7 * np.sin(a[:16] * 20 / 16)], 1)
    for brow, bx in ((lm.RIGHT_BROW, cx - 45.0), (lm.LEFT_BROW, cx + 45.0)):
        pts[list(brow), :2] = np.stack([bx + np.linspace(-20, 20, 10), np.full(10, cy - 110)], 1)
    t = np.linspace(0.0, 2.0 * np.pi, len(lm.FACE_OVAL), endpoint=False)
    pts[list(lm.FACE_OVAL), :2] = np.stack([cx + 100 * np.sin(t), cy - 60 - 115 * np.cos(t)], 1)
    return pts


def fill(image: np.ndarray, poly: np.ndarray, colour: tuple[int, int, int]) -> None:
    cv2.fillPoly(image, [np.round(poly[:, :2]).astype(np.int32)], colour)


def face_image(points: np.ndarray, *, skin: tuple[int, int, int], lips: tuple[int, int, int],
               sclera: tuple[int, int, int] = (235, 235, 230)) -> np.ndarray:
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[:] = skin
    fill(img, points[list(lm.LIPS_OUTER)], lips)
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        fill(img, points[list(eye)], sclera)
    return img


def polygon_mask(poly: np.ndarray, erode: int = 0) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    fill(mask, poly, (1, 1, 1))  # type: ignore[arg-type]
    if erode:
        mask = cv2.erode(mask, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
    return mask.astype(bool)


def lab_chroma(pixels: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return np.asarray(np.hypot(lab[:, 0, 1], lab[:, 0, 2]))


def vertical_period(column: np.ndarray) -> float:
    """Dominant period (px) of a 1-D profile: the first autocorrelation peak, refined by a
    parabola."""
    x = column - column.mean()
    ac = np.correlate(x, x, mode="full")[len(x) - 1:]
    ac = ac / ac[0]
    lag = next(i for i in range(2, len(ac) - 1) if ac[i] >= ac[i - 1] and ac[i] >= ac[i + 1])
    a, b, c = ac[lag - 1], ac[lag], ac[lag + 1]
    return lag + 0.5 * (a - c) / (a - 2 * b + c)


# -- a portrait with striped "teeth" ----------------------------------------------------------

UP, DOWN = 16.0, 16.0  # the portrait's own opening (32 px high in the middle)
PERIOD = 4  # px between the teeth stripes


def teeth_portrait() -> tuple[np.ndarray, np.ndarray]:
    """A portrait smiling with teeth: horizontal stripes (period 4 px) inside the inner lips,
    a dark gap at 70 % of the opening, lower teeth stripes below it."""
    inner = inner_lips(UP, DOWN)
    pts = landmarks_for(inner)
    img = face_image(pts, skin=(200, 160, 140), lips=(170, 80, 90))
    cy = CENTRE[1]
    top, bottom = cy - UP, cy + DOWN
    rows = np.arange(SIZE)
    v = (rows - top) / (bottom - top)
    stripes = np.where((rows // (PERIOD // 2)) % 2 == 0, 235, 140)
    shade = np.where(np.abs(v - 0.7) < 0.08, 25, stripes)  # the gap between the teeth
    mouth = polygon_mask(inner)
    for c in range(3):
        channel = img[..., c]
        channel[mouth] = np.broadcast_to(shade[:, None], (SIZE, SIZE))[mouth] - 5 * c
    return img, pts


def test_a_smile_with_teeth_is_measured_as_teeth() -> None:
    img, pts = teeth_portrait()
    style = prepare_mouth(img, pts)
    assert style.own_teeth and style.interior is not None
    assert style.own_height == pytest.approx(2 * UP * 0.85, rel=0.2)
    assert 0.6 <= style.interior.split <= 0.8  # found the dark gap
    assert not style.greyscale


@pytest.mark.parametrize("shift", [(0.0, 0.0), (3.3, -2.6)])
def test_opening_a_smile_moves_the_teeth_rigidly_instead_of_stretching_them(shift) -> None:
    img, pts = teeth_portrait()
    style = prepare_mouth(img, pts)
    out_inner = inner_lips(UP, 2 * (UP + DOWN) - UP) + shift  # twice as high
    assert polygon_area(out_inner) == pytest.approx(2 * style.own_area, rel=0.05)
    # The warp would stretch the teeth to twice their height: what the engine hands over.
    stretched = img.copy()
    y0, y1 = int(CENTRE[1] - UP), int(CENTRE[1] + DOWN)
    stretched[y0:y0 + 2 * (y1 - y0)] = cv2.resize(img[y0:y1], (SIZE, 2 * (y1 - y0)),
                                                  interpolation=cv2.INTER_LINEAR)
    stretched = np.roll(stretched, (round(shift[1]), round(shift[0])), axis=(0, 1))
    out = stretched.copy()
    used = render_mouth(out, landmarks_for(out_inner), style, mode="synthetic")
    assert used == "synthetic"
    # The upper teeth: from just under the upper lip down over half the original opening.
    xs = slice(int(CENTRE[0] + shift[0]) - 12, int(CENTRE[0] + shift[0]) + 12)
    top = int(np.ceil(CENTRE[1] - UP + shift[1])) + 1
    rows = slice(top, top + int(0.55 * (UP + DOWN)))
    profile = out[rows, xs, 1].astype(float).mean(axis=1)
    before = img[int(CENTRE[1] - UP) + 1: int(CENTRE[1] - UP) + 1 + len(profile),
                 xs.start - round(shift[0]): xs.stop - round(shift[0]), 1].mean(axis=1)
    naive = stretched[rows, xs, 1].astype(float).mean(axis=1)
    assert vertical_period(before) == pytest.approx(PERIOD, rel=0.15)
    assert vertical_period(naive) == pytest.approx(2 * PERIOD, rel=0.15)  # the test can tell
    assert vertical_period(profile) == pytest.approx(PERIOD, rel=0.15)
    # Below the teeth the opening is dark (the throat), not more teeth.
    gap_rows = slice(int(CENTRE[1] + DOWN + shift[1]), int(CENTRE[1] + DOWN + shift[1]) + 8)
    assert out[gap_rows, xs].mean() < 90


def _dropped_jaw(img: np.ndarray, style: MouthStyle, inner: np.ndarray,
                 out_inner: np.ndarray, jaw_drop: float) -> np.ndarray:
    """``img`` with the mouth painted (synthetic mode) for the output inner lips
    ``out_inner``, the portrait's own teeth hung from jaws that carry its inner lip lines
    ``inner``: the upper where it was, the lower ``jaw_drop`` px further down."""
    jaw = inner[[0, *range(19, 9, -1)]].copy()  # the portrait's lower inner lip line ...
    jaw[1:-1, 1] += jaw_drop  # ... carried down by the jaw
    out = img.copy()
    assert render_mouth(out, landmarks_for(out_inner), style, mode="synthetic",
                        anchors=(inner[:11].copy(), jaw)) == "synthetic"
    return out


def test_a_lower_lip_dropped_past_a_portrait_without_lower_teeth_shows_the_mouth_behind(
) -> None:
    """A portrait showing its upper teeth only (no gap, no lower row: its lower part is the
    lower lip's inner edge). A yell drops the lower lip far below where the lower jaw
    carries that edge: the space between was painted as gum, a flat band in the lips' tone
    (lp_s42 on lp_d18); it is the dark mouth behind now, as with no own teeth."""
    inner = inner_lips(10.0, 10.0)
    pts = landmarks_for(inner)
    img = face_image(pts, skin=(200, 160, 140), lips=(170, 80, 90))
    mouth = polygon_mask(inner)
    teeth = np.full((SIZE, SIZE, 3), (235, 230, 220), np.uint8)
    teeth[:, ::8] = (90, 80, 75)  # upper teeth down to the lower lip, gaps between them
    img[mouth] = teeth[mouth]
    style = prepare_mouth(img, pts)
    assert style.own_teeth and style.interior is not None and style.interior.split >= 1.0
    # the lower lip 50 px further down, the jaw only 8 px
    out = _dropped_jaw(img, style, inner, inner_lips(10.0, 60.0), 8.0)
    xs = slice(int(CENTRE[0]) - 10, int(CENTRE[0]) + 10)
    ys = slice(int(CENTRE[1]) + 25, int(CENTRE[1]) + 45)  # below the jaw, above the lip
    gum = np.asarray(style.lip) * mouth_module.GUM_TONE
    patch = out[ys, xs].reshape(-1, 3).astype(float)
    assert np.abs(patch - gum).mean() > 10.0  # not a band of gum (before: 0.3 from it)
    assert patch.mean() < 0.92 * gum.mean()  # the mouth behind (its tongue) is darker


def test_a_wide_open_smile_without_a_lower_row_shows_lower_teeth_in_its_own_colour(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A portrait showing its upper teeth only (the demo's astronaut) opened wide onto the
    synthetic interior: the tips of lower teeth, in its own teeth's colour, over the lower
    lip (it was a throat and a flat tongue under a black gap)."""
    inner = inner_lips(10.0, 10.0)
    pts = landmarks_for(inner)
    img = face_image(pts, skin=(200, 160, 140), lips=(170, 80, 90))
    mouth = polygon_mask(inner)
    teeth = np.full((SIZE, SIZE, 3), (235, 225, 200), np.uint8)
    teeth[:, ::8] = (90, 80, 75)
    img[mouth] = teeth[mouth]
    style = prepare_mouth(img, pts)
    assert style.own_teeth and style.interior is not None and style.interior.split >= 1.0
    out_inner = inner_lips(10.0, 50.0)
    xs = slice(int(CENTRE[0]) - 8, int(CENTRE[0]) + 8)
    lip = int(CENTRE[1] + 50)

    def lower_band() -> np.ndarray:
        out = img.copy()
        assert render_mouth(out, landmarks_for(out_inner), style,
                            mode="synthetic") == "synthetic"
        return out[lip - 7: lip - 3, xs].reshape(-1, 3).astype(float)

    tips = lower_band()
    monkeypatch.setattr(mouth_module, "LOWER_TEETH_SHOW", (9.0, 10.0))  # never
    bare = lower_band()
    assert tips.mean() > bare.mean() + 60
    r, g, b = np.median(tips, axis=0)
    assert r > g > b and r - b > 10  # its own warm white, not a grey


def test_lower_teeth_for_a_portrait_without_a_lower_row_are_its_own_teeth_tips(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lower row a portrait with upper teeth only shows in a wide opening is its own
    upper teeth's tips turned upside down (the demo's was a drawn row in its teeth's colour,
    crisp, grey and outlined: a comb), and only their light part (the dark beside its teeth
    showed as a dark wedge in the row)."""
    inner = inner_lips(10.0, 10.0)
    pts = landmarks_for(inner)
    img = face_image(pts, skin=(200, 160, 140), lips=(170, 80, 90))
    mouth = polygon_mask(inner)
    teeth = np.full((SIZE, SIZE, 3), (245, 230, 200), np.uint8)  # warm, the lightest
    teeth[int(CENTRE[1]) - 4:] = (205, 215, 235)  # the tips: cool
    teeth[:, ::8] = (90, 80, 75)  # gaps between them
    img[mouth] = teeth[mouth]
    style = prepare_mouth(img, pts)
    assert style.own_teeth and style.interior is not None and style.interior.split >= 1.0
    out_inner = inner_lips(10.0, 50.0)
    xs = slice(int(CENTRE[0]) - 8, int(CENTRE[0]) + 8)
    lip = int(CENTRE[1] + 50)

    def lower_band() -> np.ndarray:
        out = img.copy()
        assert render_mouth(out, landmarks_for(out_inner), style,
                            mode="synthetic") == "synthetic"
        return out[lip - 7: lip - 3, xs].reshape(-1, 3).astype(float)

    r, g, b = np.median(lower_band(), axis=0)
    assert b > r + 10  # the portrait's tips (a drawn row took its lightest colour: warm)
    assert r + g + b > 3 * 150  # teeth, not the mouth behind
    teeth[int(CENTRE[1]) - 4:] = (60, 50, 45)  # tips too dark to be teeth: none shown
    img[mouth] = teeth[mouth]  # (the gaps kept: own teeth still)
    style = prepare_mouth(img, pts)
    assert style.interior is not None and style.interior.split >= 1.0
    dark = lower_band()
    assert np.median(dark, axis=0).sum() < 3 * 150  # (no lower row: the mouth behind)
    monkeypatch.setattr(mouth_module, "LOWER_TEETH_SHOW", (9.0, 10.0))  # never
    assert np.abs(dark - lower_band()).max() < 1.0


def test_a_lower_lip_dropped_far_below_the_jaw_takes_the_lower_teeth_along() -> None:
    """A portrait with both rows of teeth (a gap between them). A yell drops the lower lip
    far below where the lower jaw carries the lower row (the face mesh's chin reads less of
    the drop than its lips): the space between was painted as gum, a flat band in the lips'
    tone (lp_s42 and deepface_img1 on lp_d18). Now the lower row stays within
    MAX_LOWER_GUM of the mouth's width from the lip, and the mouth behind shows above it."""
    from live.engines.mesh.mouth import MAX_LOWER_GUM

    img, pts = teeth_portrait()
    style = prepare_mouth(img, pts)
    assert style.own_teeth and style.interior is not None and style.interior.split < 1.0
    inner = inner_lips(UP, DOWN)
    out_inner = inner_lips(UP, DOWN + 40.0)  # the lower lip 40 px further down ...
    out = _dropped_jaw(img, style, inner, out_inner, 6.0)  # ... the jaw only 6 px
    xs = slice(int(CENTRE[0]) - 8, int(CENTRE[0]) + 8)
    lip = CENTRE[1] + DOWN + 40.0  # the output's lower lip, in the middle
    width = float(np.ptp(out_inner[:, 0]))
    gum = np.asarray(style.lip) * mouth_module.GUM_TONE
    # the lower row (its stripes) just above the lip, within the gum allowance and a bit
    near = out[int(lip - MAX_LOWER_GUM * width - 10):int(lip - MAX_LOWER_GUM * width - 2), xs]
    assert near[..., 1].astype(float).mean(axis=1).ptp() > 40.0  # stripes, not a flat band
    # where the jaw put the row (10-20 px below the portrait's lip): not a band of gum
    band = out[int(CENTRE[1] + DOWN + 12):int(CENTRE[1] + DOWN + 20), xs].reshape(-1, 3)
    assert np.abs(band.astype(float) - gum).mean() > 20.0


def test_a_yell_is_dark_under_the_portraits_own_teeth_and_speech_keeps_its_lit_gap() -> None:
    """Under a portrait's own upper teeth (ending in the dark gap between its rows) a wide
    opening is the shadow of the mouth, dark from the teeth down to the middle; the throat's
    top used to be lit there, a light step right under the dark gap (lp_s42 and
    deepface_img1 on lp_d18's yells). A narrow opening (speech) keeps the lit gap tone."""
    img, pts = teeth_portrait()
    style = prepare_mouth(img, pts)
    inner = inner_lips(UP, DOWN)
    centre = int(CENTRE[0])
    profiles = {}
    for extra in (8.0, 60.0):  # the lower lip (and jaw) this much further down
        out = _dropped_jaw(img, style, inner, inner_lips(UP, DOWN + extra), extra)
        y0 = int(CENTRE[1] - UP)
        profiles[extra] = out[y0:int(CENTRE[1] + DOWN + extra), centre - 3:centre + 4].astype(
            float).mean(axis=(1, 2))
    gap = int(np.argmax(profiles[60.0] < 60.0))  # where the teeth end (the same in both)
    assert gap > 10 and int(np.argmax(profiles[8.0] < 60.0)) == gap
    dark = profiles[60.0][gap]
    # from under the teeth down to nearly the middle (below it: the tongue, TONGUE)
    wide = profiles[60.0][gap + 2:int(0.45 * (UP + DOWN + 60.0))]
    assert len(wide) > 15 and wide.max() <= dark + 6.0  # no lit band (before: +29)
    narrow = profiles[8.0][gap + 3:gap + 10]
    assert narrow.max() >= dark + 15.0  # speech: the gap tone as before


def test_an_unchanged_opening_leaves_the_portrait_exactly() -> None:
    img, pts = teeth_portrait()
    style = prepare_mouth(img, pts)
    out = img.copy()
    assert render_mouth(out, pts, style, mode="synthetic") == "none"
    assert np.array_equal(out, img)
    assert render_mouth(out, pts, style, mode="driver", driver_image=img,
                        driver_points=landmarks_for(inner_lips(0.3, 0.3))) == "none"
    assert np.array_equal(out, img)
    # The driver's mouth open too, but the portrait's no further than its own: it stays.
    drv_img, drv_pts = driver(8.0, 11.0)
    assert render_mouth(out, pts, style, mode="driver", driver_image=drv_img,
                        driver_points=drv_pts) == "none"
    assert np.array_equal(out, img)


# -- a smile whose teeth fill the opening (no gap between teeth rows) -------------------------

LUMA = np.array([0.299, 0.587, 0.114])
TEETH, LIPS = (232, 226, 214), (170, 80, 90)
SMILE = inner_lips(5.0, 11.0, shape=0.6)  # the portrait's own opening: upper teeth only


def smile_image(inner: np.ndarray) -> np.ndarray:
    """A face smiling with its upper teeth filling the opening ``inner``: tooth edges every
    9 px, darker towards the corners. With the output's opening it stands for the warp's
    output (the teeth stretched to the new opening) that the mouth is painted over."""
    img = face_image(landmarks_for(inner), skin=(205, 165, 140), lips=LIPS)
    x = np.arange(SIZE, dtype=np.float64)
    teeth = np.tile(np.asarray(TEETH, np.float64), (SIZE, 1))
    teeth[(np.arange(SIZE) - int(CENTRE[0])) % 9 == 0] *= 0.7
    u = np.abs(x - CENTRE[0]) / (inner[10, 0] - inner[0, 0]) * 2.0
    teeth *= np.clip(1.6 - 1.3 * u, 0.3, 1.0)[:, None]
    mouth = polygon_mask(inner)
    img[mouth] = np.broadcast_to(teeth[None], (SIZE, SIZE, 3))[mouth].astype(np.uint8)
    return img


def coverage(poly: np.ndarray) -> np.ndarray:
    """How much of each pixel the polygon covers (0..1, 4x4 supersampled)."""
    ss = 4
    mask = np.zeros((SIZE * ss, SIZE * ss), np.uint8)
    pts = np.round(((poly[:, :2] + 0.5) * ss - 0.5) * 16.0).astype(np.int32)
    cv2.fillPoly(mask, [pts], (255,), cv2.LINE_8, 4)
    return cv2.resize(mask, (SIZE, SIZE), interpolation=cv2.INTER_AREA) / 255.0


OPENINGS = {
    "wider": inner_lips(4.0, 13.0, half_width=70.0, shape=0.6),  # a broader smile
    "slightly": inner_lips(5.0, 12.5, half_width=64.0, shape=0.6),
    "lower": inner_lips(5.0, 17.0, shape=0.6) + np.array([3.3, -2.4]),  # the jaw a little down
    "talk": inner_lips(5.0, 24.0, shape=0.6),  # twice as open
}


@pytest.mark.parametrize("mode", ["synthetic", "driver"])
@pytest.mark.parametrize("opening", list(OPENINGS))
def test_an_opening_smile_gets_no_outline_and_no_black_slit(opening: str, mode: str) -> None:
    portrait, pts = smile_image(SMILE), landmarks_for(SMILE)
    style = prepare_mouth(portrait, pts)
    assert style.own_teeth
    out_inner = OPENINGS[opening]
    out_pts = landmarks_for(out_inner)
    out = smile_image(out_inner)
    # In driver mode the driving image is the portrait itself with moved landmarks, as the
    # scripted demo hands it over: its pixels at those landmarks are lips and skin.
    used = render_mouth(out, out_pts, style, mode=mode, driver_image=portrait,
                        driver_points=out_pts)
    luma = out.astype(float) @ LUMA
    floor = min(float(np.dot(TEETH, LUMA)), float(np.dot(LIPS, LUMA))) - 10.0
    cover = coverage(out_inner)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    inside = cover > 0.5
    edge_in = inside & ~cv2.erode(inside.astype(np.uint8), disk).astype(bool)
    edge_out = cv2.dilate((cover > 0).astype(np.uint8), disk).astype(bool) & (cover == 0)
    middle = np.zeros((SIZE, SIZE), bool)  # the middle 60 % of the mouth (not its corners)
    cx, half = out_inner[[0, 10], 0].mean(), 0.5 * (out_inner[10, 0] - out_inner[0, 0])
    middle[:, int(np.ceil(cx - 0.6 * half)):int(cx + 0.6 * half)] = True
    # No line around the opening, inside or out, darker than both the teeth and the lips.
    ring = (edge_in | edge_out) & middle
    assert ring.sum() > 200
    assert (luma[ring] < floor).sum() == 0, luma[ring].min()
    if opening != "talk":
        # A little more open: the teeth go on, no black band or grey line through them.
        assert (luma[inside & middle] < floor).sum() == 0, luma[inside & middle].min()
    else:
        assert luma[inside & middle].min() < 80  # a mouth twice as open shows its throat
    assert used == "synthetic"  # the portrait has no other interior to give


def test_own_teeth_open_onto_the_drivers_tongue() -> None:
    """Driver mode on a portrait with teeth of its own: its teeth stay as synthetic mode
    hangs them, and where the mouth opens wider than the portrait's the driver's lower mouth
    (its pink tongue, colour-matched) shows instead of a synthetic dark throat."""
    portrait, pts = smile_image(SMILE), landmarks_for(SMILE)
    style = prepare_mouth(portrait, pts)
    assert style.own_teeth
    out_inner = OPENINGS["talk"]  # twice as open as the portrait: lower lip at row 174
    out_pts = landmarks_for(out_inner)
    drv_img, drv_pts = driver(8.0, 11.0)
    synthetic = smile_image(out_inner)
    assert render_mouth(synthetic, out_pts, style, mode="synthetic") == "synthetic"
    out = smile_image(out_inner)
    assert render_mouth(out, out_pts, style, mode="driver", driver_image=drv_img,
                        driver_points=drv_pts) == "driver"
    cols = slice(110, 131)
    teeth, low = slice(146, 157), slice(164, 171)  # under the upper lip; above the lower
    assert np.abs(out[teeth, cols].astype(int) - synthetic[teeth, cols]).max() <= 1
    tongue, throat = out[low, cols].reshape(-1, 3).mean(0), synthetic[low, cols].reshape(
        -1, 3).mean(0)
    assert float(tongue @ LUMA) > float(throat @ LUMA) + 60  # lit, not a dark hole
    assert tongue[0] > tongue[1] + 60  # pink-red, as the driver's tongue
    # the driver's mouth closed: nothing of it, the synthetic interior as before
    shut_img, shut_pts = driver(0.4, 0.4)
    again = smile_image(out_inner)
    assert render_mouth(again, out_pts, style, mode="driver", driver_image=shut_img,
                        driver_points=shut_pts) == "synthetic"
    assert np.array_equal(again, synthetic)


def test_a_drivers_lower_mouth_reaches_up_to_a_portraits_own_teeth(monkeypatch) -> None:
    """A mouth opened far wider than the driver's (a yell) on a portrait with teeth of its
    own: the driver's lower mouth laid as it is ended well short of the portrait's teeth,
    with a band of synthetic black throat under them (lp_s42 on lp_d18's yell, where the
    driver showed a dark red palate and tongue). Its upper share is drawn out towards the
    teeth (by at most DRIVER_LOWER_STRETCH); the lower teeth and the portrait's own teeth
    stay as they were."""
    import live.engines.mesh.mouth as mouth

    portrait, pts = smile_image(SMILE), landmarks_for(SMILE)
    style = prepare_mouth(portrait, pts)
    down = 40.0
    out_inner = inner_lips(5.0, down, shape=0.6)  # 3.6 times the portrait's opening
    out_pts = landmarks_for(out_inner)
    drv_img, drv_pts = driver(8.0, 11.0)
    stretch = mouth.DRIVER_LOWER_STRETCH
    assert stretch > 1.0

    def column(most: float) -> np.ndarray:
        """The middle of the painted mouth, row by row (grey level)."""
        monkeypatch.setattr(mouth, "DRIVER_LOWER_STRETCH", most)
        out = smile_image(out_inner)
        assert render_mouth(out, out_pts, style, mode="driver", driver_image=drv_img,
                            driver_points=drv_pts) == "driver"
        return out[:, 110:131].astype(np.float64).mean(axis=1) @ LUMA

    laid, drawn = column(1.0), column(stretch)
    y0, y1 = int(CENTRE[1]) - 5, int(CENTRE[1] + down) + 1

    def tongue_rows(col: np.ndarray) -> int:
        part = col[y0:y1]
        return int(((part > 130) & (part < 160)).sum())

    assert tongue_rows(drawn) >= tongue_rows(laid) + 2
    assert tongue_rows(drawn) <= stretch * tongue_rows(laid) + 1
    np.testing.assert_allclose(drawn[y1 - 5:y1], laid[y1 - 5:y1], atol=2)  # lower teeth, lip
    np.testing.assert_allclose(drawn[y0:y0 + 11], laid[y0:y0 + 11], atol=1)  # its own teeth


def test_the_portrait_itself_is_not_taken_for_a_driving_face() -> None:
    portrait, pts = smile_image(SMILE), landmarks_for(SMILE)
    style = prepare_mouth(portrait, pts)
    assert is_portrait(style, portrait)
    big = cv2.resize(portrait, (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_LINEAR)
    assert is_portrait(style, big)  # the driving crop at another size
    drv_img, drv_pts = driver(8.0, 11.0)
    assert not is_portrait(style, drv_img)
    assert not is_portrait(style, portrait[:, : SIZE // 2])
    out_pts = landmarks_for(OPENINGS["talk"])
    out = smile_image(OPENINGS["talk"])
    # A portrait that shows teeth of its own keeps them in driver mode too (with the
    # driver's lower mouth under them: test_own_teeth_open_onto_the_drivers_tongue)...
    assert style.own_teeth
    assert render_mouth(out.copy(), out_pts, style, mode="driver", driver_image=portrait,
                        driver_points=out_pts) == "synthetic"
    # ... a closed one takes the driver's interior.
    _, _, closed = closed_portrait()
    assert render_mouth(out.copy(), out_pts, closed, mode="driver", driver_image=drv_img,
                        driver_points=drv_pts) == "driver"


# -- a closed portrait -------------------------------------------------------------------------


def closed_portrait(*, grey: bool = False) -> tuple[np.ndarray, np.ndarray, MouthStyle]:
    pts = landmarks_for(inner_lips(0.3, 0.3))
    if grey:
        img = face_image(pts, skin=(150, 150, 150), lips=(105, 105, 105),
                         sclera=(220, 220, 220))
    else:
        img = face_image(pts, skin=(205, 165, 140), lips=(175, 85, 95))
    return img, pts, prepare_mouth(img, pts)


def test_a_drawn_interior_is_as_soft_as_a_photo() -> None:
    """The synthetic interior (a closed-mouth portrait opened wide) was drawn sharp: its
    teeth's tips against the throat and the edges between teeth jumped by 110-120 grey
    levels from one pixel to the next, crisper than any photo's mouth (the demo run on the
    FOM source image or Mona Lisa showed a drawn strip of teeth). Now blurred by about 1 px
    (:data:`SYNTHETIC_SOFTNESS` of the mouth's width)."""
    img, _, style = closed_portrait()
    out = img.copy()
    render_mouth(out, landmarks_for(inner_lips(10.0, 30.0)), style, mode="synthetic")
    x0 = int(CENTRE[0])
    lum = out[int(CENTRE[1]) - 12: int(CENTRE[1]) + 30, x0 - 20: x0 + 20].astype(float) @ LUMA
    span = float(np.ptp(lum))
    assert span > 120  # teeth, throat and tongue are there
    assert np.abs(np.diff(lum, axis=0)).max() < 0.4 * span  # teeth tips -> throat
    assert np.abs(np.diff(lum[8:14], axis=1)).max() < 0.3 * span  # between teeth


def test_a_closed_portraits_synthetic_teeth_hang_from_the_jaws() -> None:
    """A smile parts the lips, not the jaws (the fixture clips' smiles: lips 0.19-0.24 of the
    mouth's width apart, jaws 0.02-0.04): both rows of teeth show, meeting, no dark throat
    between them (it used to open onto a dark band under a strip of upper teeth). A dropped
    jaw opens a gap between the rows, where the throat shows."""
    img, _, style = closed_portrait()
    closed = inner_lips(0.3, 0.3)

    def paint(out_inner: np.ndarray, drop: float) -> np.ndarray:
        lower = closed[[0, *range(19, 9, -1)]].copy()
        lower[1:-1, 1] += drop  # the lower jaw carries the closed lip line down
        out = img.copy()
        assert render_mouth(out, landmarks_for(out_inner), style, mode="synthetic",
                            anchors=(closed[:11].copy(), lower)) == "synthetic"
        return out

    cx, cy = int(CENTRE[0]), int(CENTRE[1])
    teeth = float(style.teeth @ LUMA)

    def column(out: np.ndarray, top: int, bottom: int) -> np.ndarray:
        return np.asarray((out[cy + top:cy + bottom, cx - 4:cx + 5].astype(float) @ LUMA)
                          .mean(axis=1) / teeth)

    smile = column(paint(inner_lips(10.0, 14.0), 1.0), -8, 13)  # lips 24 px apart, jaws 1
    assert (smile > 0.6).mean() > 0.85 and smile.min() > 0.4
    yell = paint(inner_lips(10.0, 40.0), 30.0)
    assert column(yell, -6, 1).min() > 0.8  # the upper teeth under the upper lip
    assert column(yell, 6, 30).max() < 0.5  # the mouth behind, between the rows
    assert column(yell, 33, 39).mean() > 0.7  # the lower teeth over the lower lip


def test_a_closed_portrait_opens_onto_a_throat_with_a_hint_of_upper_teeth() -> None:
    img, _, style = closed_portrait()
    assert style.interior is None and not style.own_teeth
    out_inner = inner_lips(6.0, 20.0)
    out = img.copy()
    assert render_mouth(out, landmarks_for(out_inner), style, mode="synthetic") == "synthetic"
    xs = slice(int(CENTRE[0]) - 10, int(CENTRE[0]) + 10)
    teeth = out[int(CENTRE[1] - 6) + 2: int(CENTRE[1] - 6) + 5, xs].mean()
    throat = out[int(CENTRE[1]) + 4: int(CENTRE[1]) + 10, xs].mean()
    assert teeth > 130 > 2 * throat  # light teeth under the upper lip, a dark throat below
    assert style.teeth.min() > 150  # from the eye whites


def test_a_wide_synthetic_opening_shows_lower_teeth_under_shaped_upper_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Opened wide (the demo's talk), a closed portrait's synthetic mouth shows the tips of
    lower teeth over its lower lip (it opened onto a bare throat); a narrow opening none. The
    upper teeth are teeth, not a flat band: the central incisors reach further down than the
    lateral ones beside them."""
    img, _, style = closed_portrait()
    half = 90.0
    wide_inner = inner_lips(10.0, 40.0, half_width=half)  # 0.28 of its width open
    x = int(CENTRE[0])

    def luma(a: np.ndarray) -> np.ndarray:
        return np.asarray(a.astype(float) @ LUMA)

    def paint(inner: np.ndarray) -> np.ndarray:
        out = img.copy()
        assert render_mouth(out, landmarks_for(inner), style, mode="synthetic") == "synthetic"
        return out

    wide = paint(wide_inner)
    lip = int(CENTRE[1] + 40)
    throat = luma(wide[int(CENTRE[1]) + 6: int(CENTRE[1]) + 16, x - 6:x + 6]).mean()
    tips = luma(wide[lip - 5: lip - 1, x - 6:x + 6]).mean()
    assert tips > throat + 60
    narrow_inner = inner_lips(4.0, 8.0)  # 0.1 of its width
    narrow = paint(narrow_inner)
    monkeypatch.setattr(mouth_module, "LOWER_TEETH_SHOW", (9.0, 10.0))  # never
    assert np.array_equal(paint(narrow_inner), narrow)
    bare = paint(wide_inner)  # what the lower teeth cover: the tongue
    assert tips > luma(bare[lip - 5: lip - 1, x - 6:x + 6]).mean() + 50
    # the upper row: how far below the upper lip a column stays lighter than halfway from
    # the teeth to the throat
    teeth = luma(wide[int(CENTRE[1] - 10) + 2: int(CENTRE[1] - 10) + 5, x - 2:x + 2]).mean()

    def reach(col: int) -> int:
        top = int(np.ceil(np.interp(col, wide_inner[:11, 0], wide_inner[:11, 1])))
        light = luma(wide[top:top + 30, col]) > 0.5 * (teeth + throat)
        return int(np.argmin(light))  # the first row that is not

    # the middles of a central and a lateral incisor (UPPER_TEETH's edges: 0, 0.33, 0.62)
    central, lateral = (x + round(np.sin(phi) * 0.92 * half) for phi in (0.165, 0.475))
    assert reach(central) >= reach(lateral) + 1 >= 8


def test_synthetic_teeth_are_not_the_blue_of_photographed_eye_whites() -> None:
    pts = landmarks_for(inner_lips(0.3, 0.3))
    img = face_image(pts, skin=(205, 165, 140), lips=(175, 85, 95), sclera=(212, 224, 240))
    style = prepare_mouth(img, pts)
    lab = cv2.cvtColor(style.teeth.reshape(1, 1, 3) / 255.0, cv2.COLOR_RGB2Lab)[0, 0]
    sclera = cv2.cvtColor(np.float32([[[212, 224, 240]]]) / 255.0, cv2.COLOR_RGB2Lab)[0, 0]
    assert sclera[2] < -5.0 and lab[2] > 0.0  # the whites blue, the teeth a warm white
    assert lab[0] > 75.0


def test_synthetic_teeth_are_lighter_and_warmer_than_grey_in_a_shaded_face() -> None:
    """Real teeth in the fixture clips are 6-10 Lab L lighter than the skin and keep most of
    its yellow (b 0.9x); teeth made from shaded, grey eye whites came out no lighter than the
    skin and grey."""
    pts = landmarks_for(inner_lips(0.3, 0.3))
    skin = (165, 118, 104)
    img = face_image(pts, skin=skin, lips=(167, 96, 99), sclera=(150, 150, 155))
    style = prepare_mouth(img, pts)
    lab = cv2.cvtColor(style.teeth.reshape(1, 1, 3) / 255.0, cv2.COLOR_RGB2Lab)[0, 0]
    skin_lab = cv2.cvtColor(np.float32([[skin]]) / 255.0, cv2.COLOR_RGB2Lab)[0, 0]
    assert lab[0] >= skin_lab[0] + 6.0
    assert lab[2] >= 0.5 * skin_lab[2] and lab[1] < skin_lab[1]  # yellowish, less red


def test_a_mouth_open_an_eighth_of_its_width_shows_a_tongue_under_a_dark_throat() -> None:
    """A real mouth open this far is dark behind the teeth (the demo's talk used to open onto
    a flat grey band), with its tongue lit below: in the fixture clips' real mouths the
    lower bands are 0.65-1.5 of the lips' colour. The tongue used to be a dim smudge (0.3
    of the lips' luminance) under a nearly black throat. Only a narrower gap is a soft
    shadow (no black slit)."""
    img, _, style = closed_portrait()
    out_inner = inner_lips(4.0, 12.0)  # 16 px on a 120 px wide mouth
    out = img.copy()
    render_mouth(out, landmarks_for(out_inner), style, mode="synthetic")
    lip = float(style.lip @ LUMA)
    xs = slice(int(CENTRE[0]) - 10, int(CENTRE[0]) + 10)
    y = int(CENTRE[1])
    throat = out[y + 2: y + 4, xs].astype(float) @ LUMA  # right under the teeth
    assert throat.mean() < 0.4 * lip
    tongue = out[y + 5: y + 10, xs].reshape(-1, 3).astype(float)
    assert (tongue @ LUMA).mean() > 0.55 * lip
    assert (tongue @ LUMA).mean() > throat.mean() + 0.2 * lip
    hue = np.degrees(np.arctan2(*cv2.cvtColor(np.float32([[tongue.mean(axis=0) / 255.0]]),
                                              cv2.COLOR_RGB2Lab)[0, 0, 2:0:-1]))
    lip_hue = np.degrees(np.arctan2(*cv2.cvtColor(np.float32([[style.lip / 255.0]]),
                                                  cv2.COLOR_RGB2Lab)[0, 0, 2:0:-1]))
    assert abs(hue - lip_hue) < 10.0  # the lips' hue, not grey or brown
    narrow = img.copy()  # a slit: lighter than the wide opening's throat
    render_mouth(narrow, landmarks_for(inner_lips(1.0, 3.0)), style, mode="synthetic")
    slit = narrow[int(CENTRE[1]): int(CENTRE[1]) + 2, xs].astype(float) @ LUMA
    assert slit.mean() > throat.mean() + 10.0


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.float32([[np.asarray(rgb, np.float32) / 255.0]]),
                        cv2.COLOR_RGB2Lab)[0, 0]


def test_the_insides_shades_keep_the_lips_red_at_the_same_darkness() -> None:
    """The throat is a shade of the lips' colour. Scaling RGB took the colour away with the
    light: inside the demo astronaut's pale lips a brown-black band (a* 3), where a real
    mouth's inside is a deep red. A shade is as dark as the scaled colour, keeps the lips'
    red up to :data:`INTERIOR_CHROMA` times its lightness (a saturated red mouth is not
    lit up), turns towards red rather than yellow (a varnished painting's yellowed lips:
    a dark brown, not mustard) and leaves grey lips grey."""
    pale = np.float32([210, 156, 144])
    for k in (0.16, 0.3, 0.5):
        got, scaled = _lab(lip_shade(pale, k)), _lab(pale * k)
        assert abs(got[0] - scaled[0]) < 1.0  # as dark
        assert got[1] > scaled[1] + 0.4 * (_lab(pale)[1] - scaled[1])  # redder
    grey = np.float32([120, 120, 120])
    assert np.allclose(lip_shade(grey, 0.3), grey * 0.3, atol=0.6)
    red = np.float32([205, 95, 95])
    shade = _lab(lip_shade(red, 0.16))
    assert np.hypot(shade[1], shade[2]) <= INTERIOR_CHROMA * shade[0] + 0.5
    yellowed = np.float32([170, 130, 80])  # b* 33 over a* 9
    got, scaled = _lab(lip_shade(yellowed, 0.16)), _lab(yellowed * 0.16)
    assert got[2] / got[1] < scaled[2] / scaled[1]  # nearer red than scaling's hue
    assert abs(got[0] - scaled[0]) < 1.0


def test_a_pale_lipped_portraits_throat_is_a_deep_red() -> None:
    """Inside a wide opening of a portrait with pale lips the throat is red, not grey."""
    pts = landmarks_for(inner_lips(0.3, 0.3))
    img = face_image(pts, skin=(215, 180, 160), lips=(210, 156, 144))
    style = prepare_mouth(img, pts)
    out_inner = inner_lips(8.0, 24.0)
    out = img.copy()
    render_mouth(out, landmarks_for(out_inner), style, mode="synthetic")
    xs = slice(int(CENTRE[0]) - 6, int(CENTRE[0]) + 6)
    y = int(CENTRE[1])
    rows = [out[y + d, xs].reshape(-1, 3).astype(float).mean(axis=0) for d in range(-6, 12)]
    dark = min(rows, key=lambda c: float(c @ LUMA))  # the throat's darkest row
    assert float(dark @ LUMA) < 0.4 * float(style.lip @ LUMA)
    assert _lab(dark)[1] > 15.0  # red: scaling the lips' RGB gave a* 7 here


def test_a_grey_portrait_gets_a_grey_interior() -> None:
    img, _, style = closed_portrait(grey=True)
    assert style.greyscale
    out_inner = inner_lips(6.0, 20.0)
    out = img.copy()
    synthetic_mouth(out, out_inner, style)
    inside = polygon_mask(out_inner)
    assert lab_chroma(out[inside]).max() < 2.0


def test_a_lopsided_opening_is_painted_over_its_whole_polygon() -> None:
    _, _, style = closed_portrait()
    out_inner = inner_lips(2.0, 24.0, lopsided=True)
    black = np.zeros((SIZE, SIZE, 3), np.uint8)
    white = np.full((SIZE, SIZE, 3), 255, np.uint8)
    assert synthetic_mouth(black, out_inner, style, feather_px=0.0) > 0.99
    assert synthetic_mouth(white, out_inner, style, feather_px=0.0) > 0.99
    # Painted over black and over white: the difference left is what shows through.
    alpha = 1.0 - (white.astype(float) - black.astype(float)).mean(axis=2) / 255.0
    area = polygon_area(out_inner)
    assert alpha.sum() == pytest.approx(area, rel=0.05)
    painted = alpha > 0.5
    assert (painted & ~polygon_mask(out_inner)).sum() < 0.05 * area
    # Shaped, not a slit: the open side is as high as the polygon there.
    col = int(CENTRE[0] + 0.6 * HALF_WIDTH)
    assert painted[:, col].sum() >= 0.8 * (out_inner[12, 1] - out_inner[8, 1]) > 8


def test_the_old_fill_and_style_names_still_work() -> None:
    img, pts, _ = closed_portrait()
    style = mouth_style(img, pts)
    assert isinstance(style, MouthStyle) and style.own_height < 1.0
    bare = MouthStyle(style.edge, style.core, own_area=0.0)  # positional, defaults for the rest
    out = img.copy()
    assert fill_mouth(out, inner_lips(6.0, 20.0), bare) > 0.99
    assert synthetic_mouth(out, inner_lips(6.0, 20.0), bare) > 0.99
    with pytest.raises(ValueError, match="mouth mode"):
        render_mouth(out, pts, style, mode="teeth")
    assert render_mouth(out, landmarks_for(inner_lips(6.0, 20.0)), style, mode="off") == "none"


# -- the driving face's mouth ------------------------------------------------------------------

DRIVER_CENTRE = (160.0, 170.0)


def driver(up: float, down: float, *, strip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A colourful driving face (pink skin, red lips) with its mouth open: white upper teeth
    under the upper lip, a dark red throat, a pink tongue, lower teeth at the lower lip.
    A bigger crop than the portrait, the mouth elsewhere and smaller. ``strip``: the
    landmarks' lower line lies that much (px, at the middle) inside the lower lip, as the face
    mesh puts it on a wide opening."""
    size = 320
    landmarks = inner_lips(up, down, centre=DRIVER_CENTRE, half_width=45.0)
    down -= strip  # the opening as the pixels show it
    inner = inner_lips(up, down, centre=DRIVER_CENTRE, half_width=45.0)
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = (225, 160, 140)
    cx, cy = DRIVER_CENTRE
    cv2.ellipse(img, (int(cx), int(cy)), (50, int(max(up, down)) + 14), 0, 0, 360,
                (200, 50, 70), -1)
    mouth = np.zeros((size, size), np.uint8)
    fill(mouth, inner, (1, 1, 1))  # type: ignore[arg-type]
    inside = mouth.astype(bool)
    yy = np.arange(size)[:, None].repeat(size, 1)
    top, bottom = cy - up, cy + down
    v = (yy - top) / max(bottom - top, 1.0)
    img[inside] = (90, 15, 30)
    img[inside & (v < 0.3)] = (240, 236, 226)  # upper teeth
    img[inside & (v > 0.6)] = (230, 110, 130)  # tongue
    img[inside & (v > 0.9)] = (235, 230, 220)  # lower teeth
    pts = np.zeros((478, 3))
    pts[list(lm.LIPS_INNER), :2] = landmarks
    return img, pts


def test_driver_mode_brings_the_drivers_bright_teeth_into_the_opening() -> None:
    img, _, style = closed_portrait()
    drv_img, drv_pts = driver(8.0, 11.0)  # 19 px high, 25 px at the output's scale
    out_inner = inner_lips(10.0, 15.0)
    out_pts = landmarks_for(out_inner)
    out = img.copy()
    assert render_mouth(out, out_pts, style, mode="driver", driver_image=drv_img,
                        driver_points=drv_pts) == "driver"
    flat = img.copy()
    fill_mouth(flat, out_inner, style)
    xs = slice(int(CENTRE[0]) - 15, int(CENTRE[0]) + 15)
    under_lip = slice(int(CENTRE[1] - 10) + 2, int(CENTRE[1] - 10) + 5)
    assert out[under_lip, xs].mean() > 160 > 60 > flat[under_lip, xs].mean()
    inside = polygon_mask(out_inner, erode=2)
    assert out[inside].mean() > flat[inside].mean() + 40
    # Only the opening changed (plus a feathered pixel at its edge).
    changed = np.abs(out.astype(int) - img.astype(int)).max(axis=2) > 8
    assert (changed & ~cv2.dilate(polygon_mask(out_inner).astype(np.uint8),
                                  np.ones((5, 5), np.uint8)).astype(bool)).sum() == 0
    # The tongue: pinkish in the lower middle.
    tongue = out[int(CENTRE[1] + 7): int(CENTRE[1] + 10), xs].reshape(-1, 3).mean(axis=0)
    assert tongue[0] > tongue[1] + 30


def test_a_transplanted_opening_has_no_dark_rim() -> None:
    """The driver's interior reaches over its lips' edge: the opening's rim shows lip and
    interior, not a line of dark throat where the cut stopped short of the edge."""
    img, _, style = closed_portrait()
    drv_img, drv_pts = driver(12.0, 18.0)
    opening = np.zeros(drv_img.shape[:2], np.uint8)
    fill(opening, drv_pts[list(lm.LIPS_INNER), :2], (1, 1, 1))  # type: ignore[arg-type]
    drv_img[opening.astype(bool)] = (230, 110, 130)  # all tongue
    out_inner = inner_lips(9.0, 14.0)
    out = img.copy()
    assert transplant_mouth(out, out_inner, drv_img, drv_pts[list(lm.LIPS_INNER), :2],
                            style, feather_px=1.0) == pytest.approx(1.0)
    lum = out.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    rim = polygon_mask(out_inner) & ~polygon_mask(out_inner, erode=3)
    rim[:, : int(CENTRE[0] - 30)] = rim[:, int(CENTRE[0] + 30):] = False  # not the corners
    lip = float(np.array([175.0, 85.0, 95.0]) @ [0.299, 0.587, 0.114])  # closed_portrait's
    darker_side = min(float(lum[polygon_mask(out_inner, erode=4)].mean()), lip)
    # the darkest rim pixels are no darker than the darker side of the edge (the lips),
    # give or take: an interior cut 0.7 px short of the edge put them 35 levels below it
    assert np.percentile(lum[rim], 5) > darker_side - 10.0


def test_the_drivers_lower_line_moves_onto_its_lips_edge() -> None:
    """The face mesh puts a wide opening's lower inner lip inside the lip: the line moves up
    onto the edge the pixels show; a line on the edge, the corners and the upper line stay."""
    for strip in (0.0, 1.5, 3.0):
        img, pts = driver(12.0, 18.0, strip=strip)
        inner = pts[list(lm.LIPS_INNER), :2]
        moved = lower_lip_edge(img, inner)
        assert np.array_equal(moved[:11], inner[:11])  # the upper line and the corners
        drawn = inner_lips(12.0, 18.0 - strip, centre=DRIVER_CENTRE, half_width=45.0)
        edge = drawn[[0, *range(19, 9, -1)]]  # the drawn lower line, left to right
        off = moved[11:, 1] - np.interp(moved[11:, 0], edge[:, 0], edge[:, 1])
        assert np.abs(off).max() < 1.0, (strip, off)
        if strip == 0.0:
            assert np.array_equal(moved, inner)


def test_the_drivers_lower_line_stays_without_a_lip_edge_and_moves_a_limited_way() -> None:
    img, pts = driver(12.0, 18.0)
    inner = pts[list(lm.LIPS_INNER), :2]
    opening = np.zeros(img.shape[:2], np.uint8)
    fill(opening, inner, (1, 1, 1))  # type: ignore[arg-type]
    img[opening.astype(bool)] = (200, 50, 70)  # a tongue the lip's colour against the lip
    assert np.array_equal(lower_lip_edge(img, inner), inner)
    # 4 px of lip inside a 10 px opening's line: it moves up by 30 % of the opening
    img, pts = driver(4.0, 6.0, strip=4.0)
    inner = pts[list(lm.LIPS_INNER), :2]
    rise = inner[:, 1] - lower_lip_edge(img, inner)[:, 1]
    assert 0.9 * LIP_EDGE_MAX * 10.0 < rise.max() <= LIP_EDGE_MAX * 10.0 + 1e-6


def test_a_wide_driving_mouths_lip_strip_shows_as_the_outputs_lip() -> None:
    """A wide-open driver whose lower inner-lip line lies 4 px inside its lip: above the
    output's lower line, over that strip, the output's own lower lip carries on,
    not the driver's lip (as a second lower lip); with the line on the edge the driver's
    interior reaches down to the output's lip."""
    img, _, style = closed_portrait()
    out_inner = inner_lips(9.0, 14.0)
    cx, cy = int(CENTRE[0]), int(CENTRE[1])

    def band_and_lip(strip: float) -> tuple[np.ndarray, np.ndarray]:
        drv_img, drv_pts = driver(22.0, 32.0, strip=strip)  # 0.47 as high as it is wide
        out = img.copy()
        assert transplant_mouth(out, out_inner, drv_img, drv_pts[list(lm.LIPS_INNER), :2],
                                style, feather_px=1.0) == pytest.approx(1.0)
        band = out[cy + 14 - 3: cy + 14, cx - 15: cx + 15].reshape(-1, 3).mean(axis=0)
        lip = out[cy + 14 + 2: cy + 14 + 5, cx - 15: cx + 15].reshape(-1, 3).mean(axis=0)
        return band, lip

    band, lip = band_and_lip(4.0)
    assert np.abs(band - lip).max() < 12.0  # measured 0.1; the driver's lip there: 149
    band, lip = band_and_lip(0.0)  # the driver's lower teeth: light, about neutral
    assert band[0] - band[2] < 0.5 * (lip[0] - lip[2]) and band.mean() > 170


def test_a_speaking_driver_keeps_its_lower_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below a third as high as wide (speech, a smile over the teeth) the face mesh's line
    lies on the lip's edge: a strip read there would be teeth, and nothing changes."""
    img, _, style = closed_portrait()
    drv_img, drv_pts = driver(8.0, 11.0, strip=2.0)
    out_inner = inner_lips(9.0, 14.0)
    found = img.copy()
    assert transplant_mouth(found, out_inner, drv_img, drv_pts[list(lm.LIPS_INNER), :2],
                            style) > 0.0
    monkeypatch.setattr(mouth_module, "lower_lip_edge", lambda image, inner: inner.copy())
    kept = img.copy()
    transplant_mouth(kept, out_inner, drv_img, drv_pts[list(lm.LIPS_INNER), :2], style)
    assert np.array_equal(found, kept)


def test_a_grey_portrait_gets_grey_teeth_from_a_colourful_driver() -> None:
    img, _, style = closed_portrait(grey=True)
    drv_img, drv_pts = driver(12.0, 18.0)
    out_inner = inner_lips(9.0, 14.0)
    out = img.copy()
    opacity = transplant_mouth(out, out_inner, drv_img, drv_pts[list(lm.LIPS_INNER), :2],
                               style, feather_px=1.0)
    assert opacity == pytest.approx(1.0)
    inside = polygon_mask(out_inner, erode=1)
    chroma = lab_chroma(out[inside])
    assert chroma.mean() < 1.5 and chroma.max() < 4.0
    assert lab_chroma(drv_img[drv_img[..., 0] > 200]).mean() > 10  # the driver is colourful
    assert out[inside].max() > 150  # the teeth are there, light grey


def test_colour_matching_follows_the_portraits_cast() -> None:
    _, _, style = closed_portrait()
    teeth = np.array([[235.0, 232.0, 222.0], [60.0, 12.0, 20.0]], np.float32)  # + a throat
    driver_skin = np.array([225.0, 160.0, 140.0], np.float32)
    painting = MouthStyle(style.edge, style.core, 0.0, chroma=35.0,
                          cheek=np.array([170.0, 135.0, 70.0], np.float32))  # yellow-brown
    moved = match_colours(teeth, driver_skin, painting)
    assert moved[0, 2] < moved[0, :2].min() - 20  # yellowed teeth
    assert moved[0].mean() < teeth[0].mean()  # darker, like the painting's skin
    assert moved[1].max() < 80  # the throat stays dark
    grey = MouthStyle(style.edge, style.core, 0.0, chroma=0.5,
                      cheek=np.array([140.0, 140.0, 140.0], np.float32))
    out = match_colours(teeth, driver_skin, grey)
    assert np.ptp(out, axis=1).max() < 4.0  # grey
    sepia = MouthStyle(style.edge, style.core, 0.0, chroma=3.0,
                       cheek=np.array([160.0, 140.0, 115.0], np.float32))
    out = match_colours(teeth, driver_skin, sepia)
    assert out[0, 0] > out[0, 2] + 10  # warm, like the print


def test_the_drivers_teeth_take_the_portraits_teeth_colour_not_its_skins_cast() -> None:
    """A painting's olive-brown skin against a pink driver (pg_fom_source_image on lp_d18):
    the skins' ratio made the driver's teeth dark and khaki. Matched by the two faces' teeth
    colours instead (the driver's measured once, the portrait's estimate), its teeth come
    out in the portrait's teeth colour, lit as they are; flesh (tongue, throat) keeps the
    skins' match, and a black-and-white portrait still gets grey."""
    _, _, style = closed_portrait()
    olive = dataclasses.replace(style, chroma=13.5,
                                cheek=np.array([106.0, 89.0, 66.0], np.float32),
                                teeth=np.array([176.0, 161.0, 142.0], np.float32))
    driver_skin = np.array([200.0, 150.0, 130.0], np.float32)
    driver_teeth = np.array([170.0, 141.0, 127.0], np.float32)  # lp_d18's teeth_reference
    px = np.array([[170.0, 141.0, 127.0],  # teeth, as the reference
                   [230.0, 110.0, 130.0],  # tongue
                   [60.0, 12.0, 20.0]], np.float32)  # throat
    before = match_colours(px, driver_skin, olive)
    after = match_colours(px, driver_skin, olive, teeth=driver_teeth)
    assert np.abs(after[0] - olive.teeth).max() < 3.0
    # teeth tinted by the driver's light (lp_d13's purple-grey, frame 100, against its teeth
    # colour (185, 151, 138)) take the portrait's teeth colour, as much darker as they are
    tinted = match_colours(np.array([[157.0, 139.0, 144.0]], np.float32), driver_skin, olive,
                           teeth=np.array([185.0, 151.0, 138.0], np.float32))[0]
    ratio = tinted / olive.teeth
    assert np.ptp(ratio) < 0.01 and 0.85 < ratio.mean() < 0.95
    assert before[0].mean() < olive.teeth.mean() - 40  # what it was: dark khaki
    assert np.array_equal(after[1:], before[1:])
    grey = dataclasses.replace(style, chroma=0.0,
                               cheek=np.array([140.0, 140.0, 140.0], np.float32),
                               teeth=np.array([200.0, 200.0, 200.0], np.float32))
    assert np.ptp(match_colours(px, driver_skin, grey, teeth=driver_teeth), axis=1).max() < 4.0
    # through render_mouth: the driver's white upper teeth in the olive portrait's opening
    img, _, _ = closed_portrait()
    drv_img, drv_pts = driver(8.0, 11.0)
    out_inner = inner_lips(10.0, 15.0)
    under_lip = slice(int(CENTRE[1] - 10) + 2, int(CENTRE[1] - 10) + 5)
    xs = slice(int(CENTRE[0]) - 15, int(CENTRE[0]) + 15)
    rows = {}
    for teeth in (None, np.array([240.0, 236.0, 226.0], np.float32)):
        out = img.copy()
        assert render_mouth(out, landmarks_for(out_inner), olive, mode="driver",
                            driver_image=drv_img, driver_points=drv_pts,
                            driver_teeth=teeth) == "driver"
        rows[teeth is None] = out[under_lip, xs].reshape(-1, 3).mean(axis=0)
    assert np.abs(rows[False] - olive.teeth).max() < 12.0
    assert rows[False][0] > rows[False][1]  # warm, as the portrait's teeth
    assert rows[True][1] > rows[True][0]  # the skins' cast made them green (145, 155, 136)


def test_a_yelling_drivers_tongue_rides_on_the_lower_lip() -> None:
    """A yell shows, under the upper teeth, the dark throat and below it the tongue lying on
    the jaw, then a dark line and the lower teeth. The interior is split at its dark band
    into a part hanging from the upper lip and one riding on the lower: taken at the line
    under the tongue (the darkest band, looked for below 0.35 of the opening), the tongue
    hung from the upper teeth, and an output opening more than the driver's showed it
    floating in a dark throat (lp_s42 on lp_d18's yell, frame 140). Taken at the highest
    band about as dark (the throat), the tongue stays on the lower lip and the throat
    widens under the upper teeth."""
    img, _, style = closed_portrait()
    drv_img, drv_pts = driver(12.0, 18.0)  # 30 px of 90: a third as high as wide
    inner = drv_pts[list(lm.LIPS_INNER), :2]
    opening = np.zeros(drv_img.shape[:2], np.uint8)
    fill(opening, inner, (1, 1, 1))  # type: ignore[arg-type]
    inside = opening.astype(bool)
    v = (np.arange(drv_img.shape[0])[:, None].repeat(drv_img.shape[1], 1)
         - (DRIVER_CENTRE[1] - 12.0)) / 30.0
    # (lp_d18's frame 140, by bands: the line under the tongue a little darker than the
    # throat, the tongue not much lighter)
    drv_img[inside & (v < 0.15)] = (240, 236, 226)  # upper teeth
    drv_img[inside & (v >= 0.15) & (v < 0.35)] = (105, 58, 60)  # the throat
    drv_img[inside & (v >= 0.35) & (v < 0.75)] = (200, 100, 110)  # the tongue
    drv_img[inside & (v >= 0.75) & (v < 0.82)] = (95, 48, 50)  # the line under it
    drv_img[inside & (v >= 0.82)] = (235, 230, 220)  # lower teeth
    out_inner = inner_lips(16.0, 24.0, half_width=40.0)  # 40 px high, 80 wide: 2x the driver
    out = img.copy()
    assert transplant_mouth(out, out_inner, drv_img, inner, style) > 0.99
    cx, cy = int(CENTRE[0]), int(CENTRE[1])
    middle = out[:, cx - 6: cx + 6].astype(float)

    def rows(a: float, b: float) -> np.ndarray:  # shares of the output's opening, at the middle
        y0, y1 = cy - 16 + int(a * 40), cy - 16 + int(b * 40)
        return middle[y0:y1].reshape(-1, 3).mean(axis=0)

    tongue = rows(0.6, 0.78)  # just above the lower teeth: the tongue
    assert tongue[0] > tongue[1] + 50 and tongue.mean() > 110
    throat = rows(0.3, 0.4)  # under the upper teeth: the throat, wider than the driver's
    assert throat.mean() < 70


def test_a_closed_driving_mouth_changes_nothing() -> None:
    img, pts, style = closed_portrait()
    drv_img, drv_pts = driver(0.4, 0.4)
    out = img.copy()
    assert transplant_mouth(out, inner_lips(9.0, 14.0), drv_img,
                            drv_pts[list(lm.LIPS_INNER), :2], style) == 0.0
    assert np.array_equal(out, img)
    assert render_mouth(out, pts, style, mode="driver", driver_image=drv_img,
                        driver_points=drv_pts) == "none"
    assert np.array_equal(out, img)
    # The output open, the driver's mouth closed or not given: the synthetic interior.
    open_pts = landmarks_for(inner_lips(9.0, 14.0))
    assert render_mouth(out, open_pts, style, mode="driver", driver_image=drv_img,
                        driver_points=drv_pts) == "synthetic"
    assert render_mouth(img.copy(), open_pts, style, mode="driver") == "synthetic"


def test_a_driving_mouth_off_its_crop_falls_back_to_synthetic() -> None:
    img, _, style = closed_portrait()
    drv_img, drv_pts = driver(12.0, 18.0)
    drv_pts[:, 1] += 150.0  # the mouth below the crop
    out = img.copy()
    assert render_mouth(out, landmarks_for(inner_lips(9.0, 14.0)), style, mode="driver",
                        driver_image=drv_img, driver_points=drv_pts) == "synthetic"


# -- real portraits (../shared) ----------------------------------------------------------------


def _portrait(portraits_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    from live.face.portraits import find_portrait, load_image
    from live.face.tracking import face_landmarks

    crop = np.ascontiguousarray(find_portrait(load_image(portraits_dir / name), 512).crop.image)
    pts = face_landmarks(crop, refine=True)
    assert pts is not None
    return crop, pts.astype(np.float64)


@pytest.mark.fixtures
def test_real_portraits_are_measured(portraits_dir: Path) -> None:
    teeth = prepare_mouth(*_portrait(portraits_dir, "deepface_img1_smile_teeth.jpg"))
    assert teeth.own_teeth and not teeth.greyscale
    bw = prepare_mouth(*_portrait(portraits_dir, "lp_s2_bw_photo.jpg"))
    assert bw.greyscale and not bw.own_teeth
    assert lab_chroma(bw.teeth[None, :]).max() < 2.0
    mona = prepare_mouth(*_portrait(portraits_dir, "lp_s9_mona_lisa.jpg"))
    assert not mona.greyscale and not mona.own_teeth and mona.own_height < 2.0


@pytest.mark.fixtures
def test_real_teeth_stay_rigid_when_the_jaw_drops(portraits_dir: Path) -> None:
    img, pts = _portrait(portraits_dir, "deepface_img1_smile_teeth.jpg")
    style = prepare_mouth(img, pts)
    moved = pts.copy()
    drop = 1.2 * style.own_height
    lower = list(lm.LIPS_INNER_LOWER[1:-1])
    u = np.linspace(0.0, 1.0, 11)[1:-1]
    moved[lower, 1] += drop * np.sin(np.pi * u) ** 0.5
    out = img.copy()
    assert render_mouth(out, moved, style, mode="synthetic") == "synthetic"
    # The upper lip did not move: the upper teeth are where they were, unstretched.
    up = pts[list(lm.LIPS_INNER_UPPER), :2]
    x0, x1 = int(up[3, 0]), int(up[7, 0])
    y0 = int(up[3:8, 1].max()) + 2
    rows = slice(y0, y0 + int(0.4 * style.own_height))
    assert np.abs(out[rows, x0:x1].astype(int) - img[rows, x0:x1].astype(int)).mean() < 6.0


@pytest.mark.fixtures
def test_real_teeth_stay_with_the_jaws_when_a_smile_draws_the_lips_back(
        portraits_dir: Path) -> None:
    """Lips drawn back (upper up, lower down) with the nose and chin still: the teeth stay
    where they are (hung from the jaws, not the lips), no dark gap opens between the rows,
    and the upper lip comes back down onto them between the corners' zones."""
    img, pts = _portrait(portraits_dir, "deepface_img1_smile_teeth.jpg")
    style = prepare_mouth(img, pts)
    moved = pts.copy()
    lift = 0.5 * style.own_height
    for ids, dy in ((lm.LIPS_INNER_UPPER, -lift), (lm.LIPS_OUTER_UPPER, -lift),
                    (lm.LIPS_INNER_LOWER, lift), (lm.LIPS_OUTER_LOWER, lift)):
        moved[list(ids[1:-1]), 1] += dy
    jaws = jaw_anchors(pts, moved)
    np.testing.assert_allclose(jaws[0], pts[list(lm.LIPS_INNER_UPPER), :2], atol=1e-6)
    out = img.copy()
    assert render_mouth(out, moved, style, mode="driver", anchors=jaws) == "synthetic"
    up = pts[list(lm.LIPS_INNER_UPPER), :2]
    lo = pts[list(lm.LIPS_INNER_LOWER), :2]
    x0, x1 = int(up[3, 0]), int(up[7, 0])
    y0, y1 = int(up[3:8, 1].max()) + 2, int(lo[3:8, 1].min()) - 2
    teeth = (slice(y0, y1), slice(x0, x1))
    assert np.abs(out[teeth].astype(int) - img[teeth].astype(int)).mean() < 8.0
    luma = out[teeth].astype(float) @ [0.299, 0.587, 0.114]
    assert luma.mean() > 0.85 * (img[teeth].astype(float) @ [0.299, 0.587, 0.114]).mean()
    # the limit: the upper lip comes back down to the teeth (MAX_GUM_SHOW above them)
    limited = moved.copy()
    limit_lip_retraction(limited, jaws)
    width = float(np.linalg.norm(up[-1] - up[0]))
    rise = (up[1:-1, 1] - limited[list(lm.LIPS_INNER_UPPER[1:-1]), 1])
    middle = _middle(limited)
    assert middle.sum() >= 3
    assert rise[middle].max() <= MAX_GUM_SHOW * width + 0.5
    lower = list(lm.LIPS_INNER_LOWER)
    np.testing.assert_allclose(limited[lower], moved[lower])


@pytest.mark.fixtures
def test_a_grin_shows_no_band_of_gum_above_a_portraits_own_teeth(portraits_dir: Path) -> None:
    """A grinning driver lifts the whole upper lip of a portrait that smiles with its teeth:
    between the corners' zones the lip is held down onto its teeth, and the mouth there
    looks as the portrait's own. With 0.06 of the width allowed, a band of drawn gum (6 px
    here, 8 rows more than 10 levels off the photo) showed across the mouth."""
    img, pts = _portrait(portraits_dir, "deepface_img1_smile_teeth.jpg")
    style = prepare_mouth(img, pts)
    moved = pts.copy()
    lift = 0.5 * style.own_height
    for row in (lm.LIPS_INNER_UPPER, lm.LIPS_OUTER_UPPER, *lm.LIPS_UPPER_MIDDLE):
        moved[list(row[1:-1]), 1] -= lift
    jaws = jaw_anchors(pts, moved)
    limit_lip_retraction(moved, jaws)
    out = img.copy()
    assert render_mouth(out, moved, style, mode="driver", anchors=jaws) == "synthetic"
    own = pts[list(lm.LIPS_INNER_UPPER), :2]
    x0, x1 = int(own[3, 0]), int(own[7, 0])
    y1 = int(own[3:8, 1].min())
    rows = slice(y1 - int(lift), y1 + 4)  # from where the lip was lifted to the teeth's top
    off = np.abs(out[rows, x0:x1].astype(float) - img[rows, x0:x1].astype(float))
    assert (off.mean(axis=(1, 2)) > 10.0).sum() <= 2, off.mean(axis=(1, 2)).round(1)


@pytest.mark.fixtures
def test_holding_a_raised_upper_lip_down_moves_the_whole_lip_without_folding_it(
        portraits_dir: Path) -> None:
    """A smiling driver lifts every row of the upper lip; held back down to
    the portrait's own teeth, the lip comes down whole. Moving only its outer and inner line
    (as before) folded the rows between them: the lip's edge turned into a row of red specks
    over a band of skin (lp_s42 driven by lp_d0)."""
    from live.engines.mesh.topology import face_triangles, triangle_areas

    img, pts = _portrait(portraits_dir, "lp_s42.jpg")
    style = prepare_mouth(img, pts)
    assert style.own_teeth
    rows = (lm.LIPS_OUTER_UPPER[1:-1], *lm.LIPS_UPPER_MIDDLE, lm.LIPS_INNER_UPPER[1:-1])
    lip = sorted({i for row in rows for i in row})
    moved = pts.copy()
    width = float(np.linalg.norm(pts[lm.LIPS_INNER_UPPER[-1], :2]
                                 - pts[lm.LIPS_INNER_UPPER[0], :2]))
    # far past the limit, most in the middle, as a lip rises between corners that stay
    c0 = pts[lm.LIPS_INNER_UPPER[0], 0]
    along = np.clip((pts[lip, 0] - c0) / width, 0.0, 1.0)
    moved[lip, 1] -= 0.2 * width * np.sin(np.pi * along)
    jaws = jaw_anchors(pts, moved)
    limited = moved.copy()
    limit_lip_retraction(limited, jaws)
    # held back to the limit ...
    rise = pts[list(lm.LIPS_INNER_UPPER[1:-1]), 1] - limited[list(lm.LIPS_INNER_UPPER[1:-1]), 1]
    middle = _middle(limited)
    assert rise[middle].max() <= MAX_GUM_SHOW * width + 0.5
    assert rise[middle].max() >= MAX_GUM_SHOW * width - 1.0
    # ... every row with it, straight down across the mouth (by one amount per place along
    # it: a shear, which cannot turn a triangle over)
    shift = limited[lip, :2] - moved[lip, :2]
    corners = pts[[lm.LIPS_INNER_UPPER[0], lm.LIPS_INNER_UPPER[-1]], :2]
    e = (corners[1] - corners[0]) / width
    np.testing.assert_allclose(shift @ e, 0.0, atol=1e-9)
    middle_rows = [lip.index(rows[r][5]) for r in range(len(rows))]
    assert (shift[middle_rows, 1] > 0.05 * width).all()
    # ... and no triangle of the face turns over that the driven lip had not turned
    tris = face_triangles()
    touched = np.isin(tris, lip).any(axis=1)
    before = np.sign(triangle_areas(pts[:, :2], tris[touched]))
    driven = np.sign(triangle_areas(moved[:, :2], tris[touched]))
    after = np.sign(triangle_areas(limited[:, :2], tris[touched]))
    kept = before == driven  # (a lip lifted past the skin above it turns some over)
    assert kept.sum() > 0.8 * len(kept)
    assert (before[kept] == after[kept]).all(), tris[touched][kept & (before != after)]


def test_pursed_lips_shadow_the_teeth_behind_them() -> None:
    """A smiling portrait's mouth pursed into a small "o" (a third of its own width): its own
    teeth are redrawn (the warp would squeeze them sideways) and darkened, the lips pushed
    forward shadowing them; at its own width they keep their light."""
    img, pts = teeth_portrait()
    style = prepare_mouth(img, pts)
    assert style.own_teeth
    own = polygon_mask(inner_lips(UP, DOWN), erode=2)
    light = img[own].mean()
    pursed = inner_lips(UP * 0.9, DOWN * 0.9, half_width=HALF_WIDTH / 3)
    out = img.copy()
    assert render_mouth(out, landmarks_for(pursed), style, mode="synthetic") == "synthetic"
    inside = polygon_mask(pursed, erode=2)
    assert inside.sum() > 100
    assert out[inside].mean() < 0.45 * light
    wide = inner_lips(UP * 0.9, DOWN * 0.9)  # as wide as its own, a little less high
    out = img.copy()
    assert render_mouth(out, landmarks_for(wide), style, mode="synthetic") == "synthetic"
    assert out[polygon_mask(wide, erode=2)].mean() > 0.7 * light
    assert pursed_shade(10.0, 100.0) == pytest.approx(PURSED_DARKEST)
    assert pursed_shade(90.0, 100.0) == 1.0


# -- a closed mouth's seam ---------------------------------------------------------------------

SEAM = (70, 35, 40)


def seamed_portrait() -> tuple[np.ndarray, np.ndarray, MouthStyle]:
    """A closed mouth with a dark 3 px line where the lips meet, running 6 px on past each
    corner into the skin (the creases there)."""
    img, pts, _ = closed_portrait()
    cx, cy = CENTRE
    cv2.line(img, (round(cx - HALF_WIDTH - 12), round(cy)), (round(cx + HALF_WIDTH + 12),
                                                             round(cy)), SEAM, 3)
    return img, pts, prepare_mouth(img, pts)


def identity_source() -> np.ndarray:
    """The warp's source map of a warp that moves nothing."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return np.dstack([xs, ys])


def test_a_closed_mouths_seam_is_found_and_filled_from_the_lips_around_it() -> None:
    img, pts, style = seamed_portrait()
    seam = lip_seam(img, pts, style)
    assert seam is not None
    x0, y0, w, h = seam.box
    cx, cy = round(CENTRE[0]) - x0, round(CENTRE[1]) - y0
    middle = (slice(cy - 1, cy + 2), slice(cx - 30, cx + 30))
    assert (seam.mask[middle] == 255).all()
    filled = seam.patch[..., :3].astype(float)
    assert np.abs(filled[middle] - (175, 85, 95)).mean() < 12.0  # the lips' colour
    crease = (slice(cy - 1, cy + 2), slice(cx + round(HALF_WIDTH) + 8, cx + round(HALF_WIDTH) + 11))
    assert np.abs(filled[crease] - (205, 165, 140)).mean() < 25.0  # the skin's
    assert (seam.patch[middle][..., 3] == 0).all()  # the middle is not the corners' part
    assert (seam.patch[crease][..., 3] == 255).all()
    # Away from the seam the patch is the portrait.
    far = cv2.dilate(seam.mask, np.ones((9, 9), np.uint8)) == 0
    assert np.array_equal(seam.patch[..., :3][far], img[y0:y0 + h, x0:x0 + w][far])


def test_a_seams_fill_between_the_corners_is_no_lighter_than_the_lips() -> None:
    """Pale lip highlights along the seam (the FOM source image's lower lip) were drawn into
    the fill: opened, the seam's pixels run around the opening, and the fill showed as a
    pale rim inside the lips. Between the corners the fill is no lighter than the lips
    (their shade kept); past them (the creases in the skin) it is as inpainted."""
    img, pts, _ = seamed_portrait()
    cx, cy = round(CENTRE[0]), round(CENTRE[1])
    highlight = (245, 215, 215)
    cv2.rectangle(img, (cx - 34, cy + 3), (cx + 34, cy + 4), highlight, -1)  # wet, under it
    style = prepare_mouth(img, pts)
    seam = lip_seam(img, pts, style)
    assert seam is not None
    x0, y0 = seam.box[:2]
    middle = (slice(cy - y0 - 1, cy - y0 + 2), slice(cx - x0 - 30, cx - x0 + 30))
    filled = seam.patch[..., :3][middle].reshape(-1, 3).astype(float)
    lip = float(style.lip @ LUMA)
    assert (filled @ LUMA).max() <= lip + 1.0
    assert (filled @ LUMA).mean() > 0.8 * lip  # a lip, not a dark line again
    r, g, b = filled.mean(axis=0)
    assert r > g + 40 and r > b + 40  # the lips' red


def test_no_seam_on_lips_without_a_line_or_on_an_open_mouth() -> None:
    img, pts, style = closed_portrait()
    assert lip_seam(img, pts, style) is None  # nothing darker where the lips meet
    teeth_img, teeth_pts = teeth_portrait()
    assert lip_seam(teeth_img, teeth_pts, prepare_mouth(teeth_img, teeth_pts)) is None


def test_parted_lips_show_their_colour_where_the_seam_was_and_keep_a_smiles_corners() -> None:
    img, pts, style = seamed_portrait()
    seam = lip_seam(img, pts, style)
    assert seam is not None
    source = identity_source()  # the pixels where they were: only the fill changes them
    cy = round(CENTRE[1])
    middle = (slice(cy - 1, cy + 2), slice(round(CENTRE[0]) - 30, round(CENTRE[0]) + 30))
    right = round(CENTRE[0] + HALF_WIDTH)
    crease = (slice(cy - 1, cy + 2), slice(right + 8, right + 11))

    out = img.copy()  # closed as it was: nothing changes
    open_lip_seam(out, source, seam, pts, own_height=style.own_height, head=1.0)
    assert np.array_equal(out, img)

    opened = landmarks_for(inner_lips(6.0, 20.0))  # as wide as the portrait's mouth
    assert seam_shares(opened, seam, own_height=style.own_height, head=1.0) == (1.0, 0.0)
    out = img.copy()
    open_lip_seam(out, source, seam, opened, own_height=style.own_height, head=1.0)
    assert out[middle].astype(float).mean() > img[middle].astype(float).mean() + 30.0
    assert np.array_equal(out[crease], img[crease])  # a smile's corners stay dark
    changed = np.any(out != img, axis=2)
    x0, y0, w, h = seam.box
    assert not changed[:y0].any() and not changed[y0 + h:].any()
    assert not changed[:, :x0].any() and not changed[:, x0 + w:].any()

    pursed = landmarks_for(inner_lips(6.0, 20.0, half_width=0.7 * HALF_WIDTH))  # an "o"
    parted, corners = seam_shares(pursed, seam, own_height=style.own_height, head=1.0)
    assert parted == corners == 1.0
    out = img.copy()
    open_lip_seam(out, source, seam, pursed, own_height=style.own_height, head=1.0)
    assert out[crease].astype(float).mean() > img[crease].astype(float).mean() + 40.0


def test_a_lopsided_grin_keeps_the_seam_where_its_lips_still_meet() -> None:
    img, pts, style = seamed_portrait()
    seam = lip_seam(img, pts, style)
    assert seam is not None
    # the lips meet from corner 0 to the middle and are 20 px apart towards corner 10
    inner = inner_lips(0.0, 0.0)
    u = np.linspace(0.0, 1.0, 11)[1:-1][::-1]  # the lower inner lip, corner 10 -> corner 0
    inner[11:, 1] += 20.0 * np.clip((u - 0.5) / 0.15, 0.0, 1.0) * np.sin(np.pi * u) ** 0.3
    out = img.copy()
    open_lip_seam(out, identity_source(), seam, landmarks_for(inner),
                  own_height=style.own_height, head=1.0)
    cy = round(CENTRE[1])
    closed = (slice(cy - 1, cy + 2), slice(round(CENTRE[0] - 0.6 * HALF_WIDTH),
                                           round(CENTRE[0] - 0.3 * HALF_WIDTH)))
    parted = (slice(cy - 1, cy + 2), slice(round(CENTRE[0] + 0.4 * HALF_WIDTH),
                                           round(CENTRE[0] + 0.6 * HALF_WIDTH)))
    assert np.abs(out[closed].astype(float) - img[closed]).mean() < 5.0
    assert out[parted].astype(float).mean() > img[parted].astype(float).mean() + 30.0


@pytest.mark.fixtures
def test_a_grin_held_over_the_teeth_keeps_its_corners_clean(portraits_dir: Path) -> None:
    """A grin lifts the mouth's corners with the lip. Held down as far next to the corners
    as in the middle, the upper lip hooked below its own corners and crossed into the lower
    lip (thin dark strokes past the corners: lp_s42 driven by lp_d0's grin). Now the hold
    fades out towards the corners and never takes the upper lip below the lower one."""
    img, pts = _portrait(portraits_dir, "lp_s42.jpg")
    assert prepare_mouth(img, pts).own_teeth
    up, lo = list(lm.LIPS_INNER_UPPER), list(lm.LIPS_INNER_LOWER)
    width = float(np.linalg.norm(pts[up[-1], :2] - pts[up[0], :2]))
    rows = (lm.LIPS_OUTER_UPPER, *lm.LIPS_UPPER_MIDDLE, lm.LIPS_INNER_UPPER)
    moved = pts.copy()
    moved[sorted({i for row in rows for i in row[1:-1]}), 1] -= 0.2 * width
    moved[[up[0], up[-1]], 1] -= 0.15 * width  # the corners go up too
    jaws = jaw_anchors(pts, moved)
    limited = moved.copy()
    limit_lip_retraction(limited, jaws)
    # held down in the middle ...
    assert (limited[up[4:7], 1] > moved[up[4:7], 1] + 0.1 * width).all()
    # ... but next to each corner the lip stays about level with it: no hook
    for corner, beside in ((up[0], up[1]), (up[-1], up[-2])):
        assert limited[beside, 1] <= limited[corner, 1] + 0.02 * width
    # and the upper inner line stays above the lower one everywhere
    assert (limited[up[1:-1], 1] <= limited[lo[1:-1], 1] + 1e-9).all()


def test_gums_next_to_the_lip_are_not_a_dark_line() -> None:
    """A lip drawn back above a portrait's own teeth shows gum. Gum at 0.92 of the lips'
    colour and 0.8 of that next to the lip came out as a dull brown band with a dark line
    under the lip on the demo's broad smile (frames 78-100: luma 0.74 of the lip's), read as
    a gap between lip and teeth. Next to the lip it is now within a tenth of the lip's
    light, and lightest away from it."""
    lip = np.array([210.0, 156.0, 144.0], np.float32)  # the demo portrait's lips
    layer = np.zeros((1, 3, 4), np.float32)
    beyond = np.full((1, 3), 5.0, np.float32)
    lip_gap = np.array([[0.0, 1.5, 10.0]], np.float32)
    mouth_module._gums(layer, lip * np.float32(mouth_module.GUM_TONE), beyond, lip_gap)
    luma = layer[0, :, :3] @ mouth_module._LUMA
    lip_luma = float(lip @ mouth_module._LUMA)
    assert luma[0] > 0.9 * lip_luma
    assert luma[0] <= luma[1] <= luma[2]


def test_gums_darken_by_the_side_factor() -> None:
    layer = np.zeros((1, 2, 4), np.float32)
    gum = np.array([200.0, 100.0, 100.0], np.float32)
    beyond = np.full((1, 2), 5.0, np.float32)  # well past the row
    lip_gap = np.full((1, 2), 10.0, np.float32)  # away from the lip
    mouth_module._gums(layer, gum, beyond, lip_gap, np.array([[1.0, 0.25]], np.float32))
    np.testing.assert_allclose(layer[0, 0, :3], gum, rtol=1e-6)
    np.testing.assert_allclose(layer[0, 1, :3], 0.25 * gum, rtol=1e-6)
    np.testing.assert_allclose(layer[..., 3], 1.0)


def test_gums_are_not_lipstick_red() -> None:
    """A smile that draws the lip back over a portrait's own teeth shows gums, in the lips'
    colour: lp_s42's lipstick (Lab chroma 44 beside skin at 11) made them lipstick red. The
    gums keep the lips' lightness and hue with at most GUM_CHROMA more chroma than the
    skin; natural lips are left as they are, a grey photo stays grey."""
    _, _, style = closed_portrait()
    skin = np.array([204.0, 178.0, 172.0], np.float32)
    lipstick = dataclasses.replace(style, lip=np.array([192.0, 94.0, 93.0], np.float32),
                                   skin=skin)
    gum = lipstick.gum
    lab = mouth_module._to_lab(np.stack([lipstick.lip, gum, skin]))
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    assert chroma[1] == pytest.approx(chroma[2] + mouth_module.GUM_CHROMA, abs=0.5)
    assert chroma[1] < chroma[0] - 10  # paler than the lipstick ...
    assert lab[1, 0] == pytest.approx(lab[0, 0], abs=1.0)  # ... as light ...
    hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))
    assert hue[1] == pytest.approx(hue[0], abs=1.0)  # ... and as red
    natural = dataclasses.replace(style, lip=np.array([210.0, 156.0, 144.0], np.float32),
                                  skin=np.array([206.0, 173.0, 144.0], np.float32))
    assert np.array_equal(natural.gum, natural.lip)
    grey = dataclasses.replace(style, lip=np.array([123.0, 123.0, 123.0], np.float32),
                               skin=np.array([169.0, 169.0, 169.0], np.float32))
    assert np.array_equal(grey.gum, grey.lip)
