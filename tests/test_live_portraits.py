"""The portrait library: reading images, finding the face, background preparation, cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from _live_fakes import SpyEngine

from live.engines.base import create_engine
from live.errors import InputError, NoFaceError
from live.portraits import PortraitLibrary, find_portrait, load_image, portrait_paths


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
        assert lib.prepare(2) is not prepared  # evicted by max_cached=1, prepared again
        with pytest.raises(IndexError, match=r"expected 0\.\.2"):
            lib.prepare(3)
