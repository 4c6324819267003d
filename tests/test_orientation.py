"""Pictures and videos come in upright: EXIF orientation of JPEG (written here as phones do),
PNG and WebP, TIFFs not turned twice, the display matrix of rotated mp4s made here, and the
animate job's output from a sideways portrait and a rotated phone video."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from live.face.portraits import exif_orientation, load_image, usable_portraits
from live.geometry import Orientation
from live.io.video import VideoReader, VideoWriter, probe_video


def picture(w: int = 60, h: int = 40) -> np.ndarray:
    """Smooth colours with a red block at the top left and a blue one at the bottom left."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 1] = np.linspace(0, 200, w, dtype=np.uint8)[None]
    img[: h // 4, : w // 4] = (255, 0, 0)
    img[-h // 4:, : w // 4] = (0, 0, 255)
    return img


def exif_block(orientation: int, *, big_endian: bool = False) -> bytes:
    """A minimal EXIF block (TIFF header, IFD0 with the Orientation tag)."""
    e = ">" if big_endian else "<"
    header = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    entry = struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    return header + struct.pack(e + "H", 1) + entry + struct.pack(e + "I", 0)


def write_jpeg(path: Path, rgb: np.ndarray, orientation: int, *,
               big_endian: bool = False) -> Path:
    """A JPEG of ``rgb`` as stored, with an APP1 Exif segment right after SOI (as cameras
    write it)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    payload = b"Exif\x00\x00" + exif_block(orientation, big_endian=big_endian)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = buf.tobytes()
    path.write_bytes(data[:2] + app1 + data[2:])
    return path


def close(a: np.ndarray, b: np.ndarray, tol: float = 4.0) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) < tol


# --------------------------------------------------------------------------------- pictures


def test_a_phone_photo_stored_sideways_is_read_upright(tmp_path: Path) -> None:
    upright = picture()
    # Orientation 6: the camera stored the picture turned 90 degrees counter-clockwise;
    # viewers turn it 90 degrees clockwise
    stored = np.ascontiguousarray(np.rot90(upright, 1))
    for big_endian in (False, True):
        path = write_jpeg(tmp_path / f"phone{int(big_endian)}.jpg", stored, 6,
                          big_endian=big_endian)
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2] == (60, 40)  # sideways
        assert exif_orientation(path) == Orientation(True, True, False)
        got = load_image(path)
        assert close(got, upright)
        assert tuple(got[2, 2]) == pytest.approx((255, 0, 0), abs=12)  # red stays top left


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    image_module = pytest.importorskip("PIL.Image")
    image_ops = pytest.importorskip("PIL.ImageOps")
    path = write_jpeg(tmp_path / "o.jpg", picture(), orientation)
    want = np.asarray(image_ops.exif_transpose(image_module.open(path)).convert("RGB"))
    assert close(load_image(path), want, tol=1.5)


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_png_and_webp_exif_orientation(tmp_path: Path, suffix: str) -> None:
    image_module = pytest.importorskip("PIL.Image")
    stored = np.ascontiguousarray(np.rot90(picture(), 1))
    img = image_module.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / f"o{suffix}"
    img.save(path, exif=exif.tobytes(), **({"lossless": True} if suffix == ".webp" else {}))
    assert close(load_image(path), picture(), tol=1.0)


def test_a_tiff_is_turned_once(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    tiff_plugin = pytest.importorskip("PIL.TiffImagePlugin")
    tags = tiff_plugin.ImageFileDirectory_v2()
    tags[0x0112] = 6
    path = tmp_path / "o.tiff"
    image_module.fromarray(np.ascontiguousarray(np.rot90(picture(), 1))).save(path,
                                                                                tiffinfo=tags)
    assert close(load_image(path), picture(), tol=1.0)  # OpenCV turns TIFFs itself


def test_a_large_jpeg_is_decoded_small_and_upright(tmp_path: Path) -> None:
    big = cv2.resize(picture(), (4000, 3000), interpolation=cv2.INTER_LINEAR)
    path = write_jpeg(tmp_path / "big.jpg", np.ascontiguousarray(np.rot90(big, 1)), 6)
    got = load_image(path, max_size=700)
    assert got.shape == (525, 700, 3)
    assert close(got, cv2.resize(big, (700, 525), interpolation=cv2.INTER_AREA))
    assert load_image(path, max_size=5000).shape == (3000, 4000, 3)  # within the cap
    assert load_image(tmp_path / "big.jpg").shape == (3000, 4000, 3)


def test_a_sideways_astronaut_counts_as_a_portrait(tmp_path: Path) -> None:
    from skimage import data

    stored = np.ascontiguousarray(np.rot90(data.astronaut(), 1))
    path = write_jpeg(tmp_path / "astronaut.jpg", stored, 6)
    assert usable_portraits([path]) == [path]  # the face is found: the picture is upright


# ----------------------------------------------------------------------------------- videos


def write_rotated(path: Path, upright: list[np.ndarray], rotation: int,
                  hflip: bool = False) -> None:
    """An mp4 storing each upright frame turned so that a player shows it upright after the
    display matrix of ``rotation`` degrees (counter-clockwise, as ``VideoFrame.rotation``)
    and ``hflip``, like a phone video."""
    matrix_turn = {90: 1, -90: -1, 180: 2, 0: 0}[rotation]  # quarter turns the player makes
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        first = np.rot90(upright[0][:, ::-1] if hflip else upright[0], -matrix_turn)
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        stream.set_display_rotation(rotation, hflip=hflip)
        for i, image in enumerate(upright):
            stored = np.rot90(image[:, ::-1] if hflip else image, -matrix_turn)
            vframe = av.VideoFrame.from_ndarray(np.ascontiguousarray(stored), format="rgb24")
            vframe.pts = i
            for packet in stream.encode(vframe):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.parametrize(("rotation", "hflip"), [(-90, False), (90, False), (180, False),
                                                 (0, True), (90, True)])
def test_a_rotated_video_is_decoded_upright(tmp_path: Path, rotation: int, hflip: bool) -> None:
    upright = [np.roll(picture(64, 96), 2 * i, axis=1) for i in range(6)]  # a tall video
    path = tmp_path / "phone.mp4"
    write_rotated(path, upright, rotation, hflip)
    with av.open(str(path)) as c:
        stored = c.streams.video[0].codec_context
        stored_size = (stored.width, stored.height)
    info = probe_video(path)
    assert info.size == (64, 96) and info.stored_size == stored_size
    assert (rotation in (90, -90)) == (stored_size == (96, 64))
    with VideoReader(path) as reader:
        frames = [f.image for f in reader]
    assert len(frames) == 6
    for got, want in zip(frames, upright, strict=True):
        assert close(got, want, tol=6.0)
    with VideoReader(path, resize=(32, 48)) as reader:  # the size asked for is upright too
        small = next(iter(reader)).image
    assert close(small, cv2.resize(upright[0], (32, 48), interpolation=cv2.INTER_AREA), 8.0)


def test_our_own_output_has_no_display_matrix(tmp_path: Path) -> None:
    path = tmp_path / "plain.mp4"
    with VideoWriter(path, fps=25, size=(64, 96)) as writer:
        writer.write(picture(64, 96))
    with av.open(str(path)) as c:
        vframe = next(c.decode(video=0))
        assert vframe.rotation == 0 and vframe.side_data.get("DISPLAYMATRIX") is None


@pytest.mark.fixtures
def test_animate_output_is_upright_from_a_sideways_portrait_and_a_phone_video(
        tmp_path: Path, portraits_dir: Path, driving_dir: Path) -> None:
    from live.jobs.animate import AnimateConfig, run_animate

    upright_portrait = load_image(portraits_dir / "lp_s9_mona_lisa.jpg")  # 720x1280
    sideways = write_jpeg(tmp_path / "mona.jpg",
                          np.ascontiguousarray(np.rot90(upright_portrait, 1)), 6)
    with VideoReader(driving_dir / "lp_d11.mp4") as reader:
        frames = [f.image for _, f in zip(range(30), reader, strict=False)]
    phone = tmp_path / "phone.mp4"
    write_rotated(phone, frames, -90)  # stored as landscape frames, shown turned clockwise
    out = tmp_path / "out.mp4"
    report = run_animate(AnimateConfig(source_image=sideways, driving_video=phone, output=out,
                                       engine="mesh", keep_audio=False), progress=False)
    assert report.size == (720, 1280) and report.frames == 30
    assert report.lost_frames <= 2  # the driving face is found: the frames were upright
    info = probe_video(out)
    assert info.size == (720, 1280) and info.orientation.identity
    with VideoReader(out) as reader:
        first = next(iter(reader)).image
    assert close(first, upright_portrait, tol=6.0)  # frame 0 is the portrait, upright
