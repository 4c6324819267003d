"""Adding a portrait to the portrait folder from bytes sent by the control page.

:func:`store_portrait` is the only way an upload reaches the disk. It refuses, each with a
clear message and an HTTP status (:class:`UploadRejected`): more than ``max_bytes``; content
that is not a JPEG, PNG, WebP or BMP by its magic bytes (the file name and the client's
content type are ignored); a picture whose header declares more pixels than the limit (a
small file can decode to gigabytes, so this is checked before decoding); a picture that
:func:`~live.face.portraits.load_image` cannot decode or in which
:func:`~live.face.portraits.find_faces` finds no face (the same checks a portrait folder
gets); a folder that is missing, not writable, or on a disk with less than
``min_free_bytes`` left after the write.

The file is written under a temporary hidden name (``O_CREAT | O_EXCL``, never following a
link) in the portrait folder itself, checked, and renamed to a name the server chooses from
the content's hash and sniffed type (``upload-<sha256 prefix>.jpg``), so nothing the client
sends takes part in any path and the same picture sent twice is stored once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from calibrate.errors import InputError, MimicamError

log = logging.getLogger(__name__)

__all__ = [
    "UPLOAD_TYPES",
    "StoredPortrait",
    "UploadLimits",
    "UploadRejected",
    "image_dimensions",
    "remove_stale_uploads",
    "sniff_image",
    "store_portrait",
]

UPLOAD_TYPES: dict[str, str] = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp"}
"""The picture types an upload may be (sniffed from the content) and the suffix it is
stored with."""

_TMP_PREFIX = ".mimicam-upload-"


class UploadRejected(InputError):
    """An upload that is not stored; ``status`` is the HTTP status that fits the reason."""

    def __init__(self, what: str, *, status: int = 422, expected: str = "",
                 got: str = "") -> None:
        super().__init__(what, expected=expected, got=got)
        self.status = int(status)


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may cost: its size, the pixels it may decode to (JPEG separately: it
    has no alpha and decodes cheaply), and the disk space that must remain free."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_pixels_jpeg: int = 50_000_000
    max_side: int = 16384
    min_free_bytes: int = 500 * 1024 * 1024


@dataclass(frozen=True)
class StoredPortrait:
    """Where an upload was stored; ``added`` is False when the same picture was there."""

    path: Path
    kind: str
    size: tuple[int, int]
    added: bool


def sniff_image(data: bytes) -> str | None:
    """The picture type of ``data`` by its magic bytes: a key of :data:`UPLOAD_TYPES`, or
    None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM" and len(data) >= 26:
        return "bmp"
    return None


def image_dimensions(data: bytes, kind: str) -> tuple[int, int] | None:
    """``(width, height)`` declared by the header of a picture of type ``kind``, or None when
    the header cannot be read."""
    try:
        if kind == "png":
            if data[12:16] != b"IHDR":
                return None
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if kind == "bmp":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if kind == "webp":
            return _webp_dimensions(data)
        if kind == "jpeg":
            return _jpeg_dimensions(data)
    except struct.error:
        return None
    return None


def _webp_dimensions(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                  0xCF})


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[pos + 5:pos + 9])
            return int(w), int(h)
        pos += 2 + length
    return None


def _check_content(data: bytes, limits: UploadLimits) -> tuple[str, tuple[int, int]]:
    if len(data) > limits.max_bytes:
        raise UploadRejected("the picture is too large", status=413,
                             expected=f"at most {limits.max_bytes // (1024 * 1024)} MB",
                             got=f"{len(data) / (1024 * 1024):.1f} MB")
    if not data:
        raise UploadRejected("the upload is empty", status=400, expected="a picture")
    kind = sniff_image(data)
    if kind is None:
        raise UploadRejected("not a picture mimicam can use", status=415,
                             expected="a JPEG, PNG, WebP or BMP picture",
                             got=f"{len(data)} bytes of another kind")
    size = image_dimensions(data, kind)
    if size is None or min(size) < 1:
        raise UploadRejected(f"the {kind.upper()} picture is damaged", status=422,
                             expected="a picture with a readable header",
                             got="a header without a size")
    w, h = size
    cap = limits.max_pixels_jpeg if kind == "jpeg" else limits.max_pixels
    if w * h > cap or max(w, h) > limits.max_side:
        raise UploadRejected("the picture has too many pixels", status=413,
                             expected=f"at most {cap / 1e6:.0f} megapixels and "
                             f"{limits.max_side} pixels a side (scale it down)",
                             got=f"{w}x{h}")
    return kind, size


def _check_folder(folder: Path, need: int, limits: UploadLimits) -> None:
    if not folder.is_dir():
        raise UploadRejected("the portrait folder is gone", status=409, got=str(folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UploadRejected("cannot write to the portrait folder", status=403,
                             expected=f"write permission on {folder}", got="none")
    free = shutil.disk_usage(folder).free
    if free - need < limits.min_free_bytes:
        raise UploadRejected("not enough free disk space for the picture", status=507,
                             expected=f"{limits.min_free_bytes // (1024 * 1024)} MB left free "
                             f"after it on the disk of {folder}",
                             got=f"{free // (1024 * 1024)} MB free")


def _write_temp(folder: Path, data: bytes) -> Path:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_BINARY", 0)
    tmp = folder / f"{_TMP_PREFIX}{secrets.token_hex(8)}.partial"
    fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def store_portrait(data: bytes, folder: str | os.PathLike[str], *,
                   limits: UploadLimits | None = None, check_face: bool = True,
                   max_faces_search: int = 1) -> StoredPortrait:
    """Check ``data`` and store it in ``folder`` under a name chosen here (see the module
    docstring); raises :class:`UploadRejected` saying why not. ``check_face=False`` skips
    the face search (tests of the storage alone)."""
    from live.face.portraits import find_faces, load_image

    limits = limits or UploadLimits()
    kind, size = _check_content(data, limits)
    root = Path(folder)
    _check_folder(root, len(data), limits)
    digest = hashlib.sha256(data).hexdigest()
    name = f"upload-{digest[:16]}{UPLOAD_TYPES[kind]}"
    final = root / name
    if final.parent != root:  # the name is ours; checked all the same
        raise UploadRejected("refusing a path outside the portrait folder", status=400)
    if final.is_file() and final.stat().st_size == len(data):
        log.info("upload: %s is already in %s", name, root)
        return StoredPortrait(final, kind, size, added=False)
    try:
        tmp = _write_temp(root, data)
    except OSError as exc:
        raise UploadRejected("cannot write the picture to the portrait folder", status=507,
                             got=exc.strerror or str(exc)) from None
    try:
        try:
            image = load_image(tmp)
        except MimicamError:
            raise UploadRejected(f"the {kind.upper()} picture cannot be decoded",
                                 status=422, expected="a complete, readable picture",
                                 got=f"{len(data)} bytes that do not decode") from None
        if check_face:
            try:
                find_faces(image, max_faces=max_faces_search, path=name, what="picture",
                           whole_picture_first=max_faces_search == 1)
            except MimicamError:
                raise UploadRejected(
                    "no face found in the picture", status=422,
                    expected="a photo or painting with a clearly visible face",
                    got=f"a {image.shape[1]}x{image.shape[0]} picture without one") from None
        del image
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("upload: stored %s (%s, %dx%d, %d bytes) in %s", name, kind, *size, len(data),
             root)
    return StoredPortrait(final, kind, size, added=True)


def remove_stale_uploads(folder: str | os.PathLike[str], *, older_than: float = 3600.0) -> int:
    """Remove temporary files a killed upload left in ``folder`` (untouched for
    ``older_than`` seconds: another run may be writing a fresh one); returns how many."""
    import time

    removed = 0
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(_TMP_PREFIX) and entry.name.endswith(".partial"):
            try:
                if time.time() - entry.lstat().st_mtime < older_than:
                    continue
                entry.unlink()
                removed += 1
            except OSError:
                log.debug("cannot remove %s", entry, exc_info=True)
    return removed
