"""The portrait library: reading images, finding the face, background preparation, cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from _live_fakes import SpyEngine

from calibrate.errors import InputError, NoFaceError
from live.engines.base import create_engine
from live.face.portraits import (
    PortraitLibrary,
    find_faces,
    find_portrait,
    load_image,
    portrait_paths,
    reduced_portrait,
)


def test_load_image_handles_alpha_grey_and_16_bit(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGRA
    rgba[:, :4, 3] = 255  # left half opaque, right half transparent
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    img = load_image(tmp_path / "a.png")
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (255, 0, 0)  # red, as RGB
    assert tuple(img[0, 7]) == (255, 255, 255)  # transparent over white
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 6), 77, np.uint8))
    assert load_image(tmp_path / "g.png").shape == (5, 6, 3)
    cv2.imwrite(str(tmp_path / "w.png"), np.full((4, 4, 3), 65535, np.uint16))
    assert load_image(tmp_path / "w.png").max() == 255
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"bad\.jpg.*expected an image file"):
        load_image(tmp_path / "bad.jpg")


def test_load_image_float_pixels_in_0_to_1_are_scaled(tmp_path: Path) -> None:
    bgr = np.zeros((4, 5, 3), np.float32)
    bgr[..., 2] = 1.0  # red in BGR
    bgr[..., 1] = 0.5
    bgr[0, 0] = (0.0, 0.0, 0.0)
    uncompressed = [cv2.IMWRITE_TIFF_COMPRESSION, 1]
    assert cv2.imwrite(str(tmp_path / "f.tiff"), bgr, uncompressed)
    img = load_image(tmp_path / "f.tiff")
    assert img.dtype == np.uint8 and img.shape == (4, 5, 3)
    assert tuple(img[1, 1]) == (255, 128, 0)  # 0..1 -> 0..255, not stretched to the range
    assert tuple(img[0, 0]) == (0, 0, 0)
    # a dark float picture stays dark (no contrast stretch)
    assert cv2.imwrite(str(tmp_path / "dark.tiff"), np.full((3, 3), 0.2, np.float32),
                       uncompressed)
    assert load_image(tmp_path / "dark.tiff").max() == 51
    # OpenCV's default float TIFF is lossy (LogLuv) and overshoots 0..1 a little: clipped
    assert cv2.imwrite(str(tmp_path / "lossy.tiff"), bgr)
    img = load_image(tmp_path / "lossy.tiff")
    assert np.abs(img[1, 1].astype(int) - (255, 128, 0)).max() <= 2


def test_load_image_rejects_hdr_and_signed_pixels(tmp_path: Path) -> None:
    hdr = np.full((4, 4, 3), 0.5, np.float32)
    hdr[0, 0] = 3.0  # brighter than white: an HDR picture
    assert cv2.imwrite(str(tmp_path / "sky.hdr"), hdr)
    with pytest.raises(InputError, match=r"sky\.hdr: unsupported portrait pixel format; "
                                         r"expected .*floating-point pixels in 0\.\.1.*"
                                         r"got float32 pixels from 0\.5 to 3"):
        load_image(tmp_path / "sky.hdr")
    assert cv2.imwrite(str(tmp_path / "signed.tiff"), np.full((4, 4), -5, np.int16))
    with pytest.raises(InputError, match=r"signed\.tiff: unsupported .*got int16 pixels"):
        load_image(tmp_path / "signed.tiff")


def test_load_image_16_bit_grey_and_rgba(tmp_path: Path) -> None:
    grey16 = np.array([[0, 257 * 100, 65535]], np.uint16)
    assert cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    img = load_image(tmp_path / "g16.png")
    assert img.shape == (1, 3, 3) and img.flags.c_contiguous
    assert img[0, :, 0].tolist() == [0, 100, 255] and (img[..., 0] == img[..., 2]).all()
    rgba16 = np.zeros((2, 2, 4), np.uint16)
    rgba16[..., 0] = 65535  # blue in BGRA
    rgba16[0, :, 3] = 65535  # top row opaque
    rgba16[1, :, 3] = 257 * 128  # bottom row half transparent
    assert cv2.imwrite(str(tmp_path / "a16.png"), rgba16)
    img = load_image(tmp_path / "a16.png")
    assert tuple(img[0, 0]) == (0, 0, 255)
    assert tuple(img[1, 0]) == (127, 127, 255)  # half blue, half the white background


def test_load_image_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.png: cannot read the portrait.*no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match=r"cannot read the portrait.*got a directory"):
        load_image(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png: cannot read the portrait.*got 0 bytes"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "text.jpg").write_bytes(b"hello, not a picture")
    with pytest.raises(InputError, match=r"text\.jpg.*got 20 bytes OpenCV cannot decode"):
        load_image(tmp_path / "text.jpg")
    # a background image is called one (it was "the portrait" whatever the picture was for)
    with pytest.raises(InputError, match=r"text\.jpg: cannot read the background image"):
        load_image(tmp_path / "text.jpg", what="background image")
    floats = (np.ones((4, 4, 3)) * 9.0).astype(np.float32)
    assert cv2.imwrite(str(tmp_path / "hdr.tiff"), floats)
    with pytest.raises(InputError, match=r"unsupported background image pixel format"):
        load_image(tmp_path / "hdr.tiff", what="background image")


def test_load_image_is_the_one_loader() -> None:
    import live.jobs.demo

    assert live.jobs.demo.load_image is load_image


def test_portrait_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such path"):
        portrait_paths(tmp_path / "missing")
    with pytest.raises(InputError, match="no portrait images"):
        portrait_paths(tmp_path)
    for name in ("b.PNG", "a.jpg", ".hidden.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in portrait_paths(tmp_path)] == ["a.jpg", "b.PNG"]
    assert portrait_paths(tmp_path / "a.jpg") == [tmp_path / "a.jpg"]


def test_a_picture_without_a_face_is_a_clear_error() -> None:
    image = np.full((300, 300, 3), 127, np.uint8)
    with pytest.raises(NoFaceError, match="no face found in the portrait"):
        find_portrait(image, 256, path="wall.png")


@pytest.mark.fixtures
def test_find_faces_largest_first_up_to_max_faces(portraits_dir: Path) -> None:
    image = load_image(portraits_dir / "multi_pg_fom_multi_person.jpg")
    every = find_faces(image, max_faces=20, what="group photo")
    assert len(every) >= 3 and all(lm.shape == (478, 3) for lm in every)
    # largest first (by detector box; the faces' mesh sizes agree on the clearly smallest)
    sizes = [float(np.ptp(lm[:, 0]) * np.ptp(lm[:, 1])) for lm in every]
    assert sizes[-1] == min(sizes) and sizes[0] > 1.2 * sizes[-1]
    fewer = find_faces(image, max_faces=len(every) - 1)
    assert len(fewer) == len(every) - 1  # the smallest face is the one left out
    assert all(np.array_equal(a, b) for a, b in zip(fewer, every, strict=False))
    # the live portrait's quick route finds the same (largest) face
    (quick,) = find_faces(image, whole_picture_first=True)
    assert np.abs(quick[:, :2].mean(axis=0) - every[0][:, :2].mean(axis=0)).max() < 5.0
    with pytest.raises(NoFaceError, match=r"wall\.png: no face found in the source image"):
        find_faces(np.full((300, 300, 3), 90, np.uint8), path=Path("wall.png"),
                   what="source image")
    with pytest.raises(ValueError, match="max_faces"):
        find_faces(image, max_faces=0)


@pytest.mark.fixtures
def test_library_prepares_in_the_background_and_caches(portraits_dir: Path,
                                                       tmp_path: Path) -> None:
    (tmp_path / "1.png").write_bytes((portraits_dir / "lp_s42.jpg").read_bytes())
    cv2.imwrite(str(tmp_path / "2_blank.png"), np.full((200, 200, 3), 90, np.uint8))
    (tmp_path / "3.jpg").write_bytes((portraits_dir / "lp_d8_glasses_man.jpg").read_bytes())
    engine = SpyEngine(create_engine("mesh", size=256))
    with PortraitLibrary.from_path(tmp_path, engine, output_size=(640, 360),
                                   max_cached=1) as lib:
        assert lib.names == ["1.png", "2_blank.png", "3.jpg"]
        fut = lib.prepare_async(2)
        prepared = fut.result(timeout=60)
        assert prepared.index == 2 and prepared.portrait.name == "3.jpg"
        crop = prepared.portrait.crop
        assert crop.image.shape == (256, 256, 3) and crop.landmarks is not None
        # the crop's landmarks map onto the full picture's landmarks
        m = crop.crop_to_frame
        mapped = crop.landmarks[:, :2] @ m[:, :2].T + m[:, 2]
        assert np.abs(mapped - prepared.portrait.landmarks[:, :2]).max() < 0.5
        assert prepared.compositor.background.shape == (360, 640, 3)
        assert lib.prepare(2) is prepared  # cached
        with pytest.raises(NoFaceError):
            lib.prepare_async(1).result(timeout=60)
        lib.prepare(0)
        # the engine is told which part of each crop shows the photo: lp_s42's crop reaches
        # past its bottom edge, the glasses man's lies inside his photo
        assert engine.pictures[-1] == lib.prepare(0).portrait.picture_box
        assert engine.pictures[-1][3] < 256 and engine.pictures[0] == (0, 0, 256, 256)
        assert lib.prepare(2) is not prepared  # evicted by max_cached=1, prepared again
        with pytest.raises(IndexError, match=r"expected 0\.\.2"):
            lib.prepare(3)


@pytest.mark.fixtures
def test_a_picture_far_larger_than_it_is_shown_is_kept_reduced(
        portraits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a 3072 px photo in a 640x360 call is shown at a tenth of its size: the compositor and
    # the person's layers work on it reduced by a whole factor to about twice that (a fifth
    # of the memory and time of a 12 MP phone photo), the engine's face crop is still cut
    # from the full picture, and the output is the unreduced one's within a level
    import live.face.portraits as portraits
    from live.background import Background

    image = cv2.imread(str(portraits_dir / "lp_s42.jpg"))
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.resize(image, (3072, 3072), interpolation=cv2.INTER_CUBIC))
    full = find_portrait(load_image(big), 256, path=big)
    stills, crops = {}, {}
    for detail in (portraits.PICTURE_DETAIL, 1e3):  # 1e3: never reduced
        monkeypatch.setattr(portraits, "PICTURE_DETAIL", detail)
        engine = SpyEngine(create_engine("mesh", size=256))
        seen: list[np.ndarray] = []
        prepare = engine.prepare

        def recording(crop: np.ndarray, *, seen: list[np.ndarray] = seen,
                      prepare: Any = prepare, **kw: Any) -> Any:
            seen.append(crop.copy())
            return prepare(crop, **kw)

        engine.prepare = recording  # type: ignore[method-assign]
        with PortraitLibrary([big], engine, output_size=(640, 360), framing="shoulders",
                             backgrounds=[Background.parse("blur")]) as lib:
            prepared = lib.prepare(0)
            layer = prepared.backgrounds[lib.background]
            assert layer is not None
            stills[detail] = layer.still.astype(int)
            crops[detail] = seen[0]
            assert engine.pictures == [full.picture_box]
            shape = prepared.portrait.image.shape
            # the person's layers at the size the segmentation worked at (the shown size)
            k = min(1.0, portraits.SEGMENT_DETAIL * prepared.compositor.framing.scale)
            assert prepared.layers is not None
            assert prepared.layers.matte.shape == (round(shape[0] * k), round(shape[1] * k))
            assert prepared.layers.plate.shape == (*prepared.layers.matte.shape, 3)
            if detail > 100:
                assert shape == full.image.shape
            else:
                shown = prepared.compositor.framing.scale * shape[1] / 3072
                k = 3072 // shape[1]
                assert k >= 2 and shape[:2] == (3072 // k, 3072 // k)
                assert shape[1] / 3072 >= portraits.PICTURE_DETAIL * shown - 1e-6
    np.testing.assert_array_equal(crops[portraits.PICTURE_DETAIL], full.crop.image)
    np.testing.assert_array_equal(crops[1e3], full.crop.image)
    apart = np.abs(stills[portraits.PICTURE_DETAIL] - stills[1e3])
    assert apart.mean() < 1.0 and np.percentile(apart, 99.9) < 16, (apart.mean(), apart.max())


@pytest.mark.fixtures
def test_a_reduced_portrait_keeps_its_crop_and_landmarks_in_register(
        portraits_dir: Path) -> None:
    portrait = find_portrait(load_image(portraits_dir / "lp_s42.jpg"), 256)
    half = reduced_portrait(portrait, 0.5)
    assert half.image.shape == (256, 256, 3) and half.crop is not portrait.crop
    np.testing.assert_array_equal(half.crop.image, portrait.crop.image)
    # the crop's landmarks land on the reduced picture's landmarks, as on the full picture's
    m = half.crop.crop_to_frame
    assert portrait.crop.landmarks is not None
    mapped = portrait.crop.landmarks[:, :2] @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - half.landmarks[:, :2]).max() < 0.3
    # a pixel centre of the full picture onto the reduced one's (area averaging's own)
    assert np.allclose(half.landmarks[:, :2], (portrait.landmarks[:, :2] + 0.5) * 0.5 - 0.5,
                       atol=1e-4)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="scale"):
            reduced_portrait(portrait, bad)


@pytest.mark.fixtures
def test_a_face_of_a_group_photo_takes_the_whole_pictures_view_of_its_person(
        portraits_dir: Path) -> None:
    """A face picked from a group photo (``face=``) hands the engine the whole picture's
    person mask as a :class:`WiderView`, which the engine's segmentation takes instead of its
    crop's own (the crop cuts the neighbours: the Syndics' face 1 lost part of its hat and
    collar on a replaced background, benchmarks/README "Round 65"); a picture of one face
    hands the plain function, as before."""
    from live.face.segmentation import WiderView

    engine = SpyEngine(create_engine("mesh", size=256))
    try:
        group = portraits_dir / "multi_pg_fom_multi_person.jpg"
        with PortraitLibrary([group], engine, output_size=(640, 360), face=1) as lib:
            assert lib.prepare(0).portrait.faces == 5
        (view,) = engine.contexts
        assert isinstance(view, WiderView)
        mask = view()
        assert mask is not None and mask.shape == (256, 256) and mask.dtype == np.float32
        assert mask.min() >= 0.0 and mask.max() <= 1.0 and mask.mean() > 0.3
        one = portraits_dir / "lp_d8_glasses_man.jpg"
        for face in (None, 1):
            with PortraitLibrary([one], engine, output_size=(640, 360), face=face) as lib:
                assert lib.prepare(0).portrait.faces == 1
            assert callable(engine.contexts[-1])
            assert not isinstance(engine.contexts[-1], WiderView)
    finally:
        engine.close()


@pytest.mark.fixtures
def test_the_mesh_engines_whole_crop_is_pasted_not_an_ellipse_of_it(portraits_dir: Path) -> None:
    """The compositor pasted a feathered ellipse of the face crop: hair and shoulders the
    mesh engine moved past it showed twice, moved and as a faint copy where they had been
    (lp_s42's hair on tps_driving). The mesh engine keeps its crop's picture still away from
    the head, so its whole crop is pasted (to the photo's own edges, easing out only where
    the crop cuts into the photo); an engine that does not say so keeps the ellipse."""
    path = portraits_dir / "lp_d8_glasses_man.jpg"  # a face crop inside its photo
    engine = create_engine("mesh", size=256)
    try:
        assert getattr(engine, "pastes_whole_crop", False)
        red = np.zeros((256, 256, 3), np.uint8)
        red[..., 0] = 255

        def corner_of_paste() -> np.ndarray:
            with PortraitLibrary([path], engine, output_size=(640, 360),
                                 framing="shoulders") as lib:
                prepared = lib.prepare(0)
                assert prepared.portrait.picture_box == (0, 0, 256, 256)
                comp = prepared.compositor
                out = comp.compose(red)
                # 0.15 of the side in from the crop's corner: outside the ellipse
                x, y = comp.crop_to_output @ np.array([0.15 * 256, 0.15 * 256, 1.0])
                at = (round(y), round(x))
                return out[at].astype(np.int32) - comp.background[at].astype(np.int32)

        whole = corner_of_paste()
        assert whole[0] > 100 and whole[1] < -10  # the crop's red, pasted
        engine.pastes_whole_crop = False  # type: ignore[attr-defined]
        assert np.abs(corner_of_paste()).max() <= 2  # the ellipse leaves the photo there
    finally:
        engine.close()
