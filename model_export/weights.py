"""Where FOMM weights come from: the user cache, PaddleGAN's download, file inspection.

PaddleGAN publishes ``vox-cpk.pdparams`` (256 px) and ``vox-cpk-512.pdparams``; both use the
vox-256 network layout. :func:`fetch_weights` downloads one into the cache (a temporary name,
checked against the network layout, then renamed); :func:`find_weights` says whether it is
already there. Without network access, users download the file elsewhere and pass
``--weights PATH``, or convert the original first-order-model checkpoint with
``mimicam weights convert vox-cpk.pth.tar vox-cpk.pdparams``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from calibrate.errors import InputError, WeightsError
from model_export import checkpoint

if TYPE_CHECKING:
    from model_export.fomm.config import FommConfig

log = logging.getLogger(__name__)

# As written in PaddleGAN's ppgan/apps/first_order_predictor.py.
OFFICIAL_URLS: dict[int, str] = {
    256: "https://paddlegan.bj.bcebos.com/applications/first_order_model/vox-cpk.pdparams",
    512: "https://paddlegan.bj.bcebos.com/applications/first_order_model/vox-cpk-512.pdparams",
}
CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """The folder for downloaded weights: ``<user cache dir of mimicam>/weights``."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mimicam", appauthor=False)) / "weights"


def _check_size(size: int) -> int:
    if size not in OFFICIAL_URLS:
        raise InputError("no official FOMM checkpoint for this size",
                         expected=" or ".join(str(s) for s in OFFICIAL_URLS), got=repr(size))
    return size


def official_url(size: int = 256) -> str:
    """PaddleGAN's download URL of the vox checkpoint for ``size`` (256 or 512)."""
    return OFFICIAL_URLS[_check_size(size)]


def cached_name(size: int = 256) -> str:
    """The file name the weights for ``size`` have in the cache (as in the URL)."""
    return official_url(size).rsplit("/", 1)[-1]


def find_weights(size: int = 256, *, cache_dir: str | Path | None = None) -> Path | None:
    """The cached checkpoint for ``size`` if one was fetched, else None (not re-validated)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / cached_name(size)
    return path if path.is_file() and path.stat().st_size > 0 else None


def _where_else(url: str, final: Path) -> str:
    return (f"download {url} yourself and pass it with --weights PATH (or put it at {final}), "
            "or convert the original first-order-model checkpoint with "
            "'mimicam weights convert vox-cpk.pth.tar vox-cpk.pdparams' and pass that with "
            "--weights")


def fetch_weights(size: int = 256, *, dest_dir: str | Path | None = None,
                  timeout: float = 10.0, progress: bool = True,
                  config: FommConfig | None = None) -> Path:
    """Download PaddleGAN's vox checkpoint for ``size`` into ``dest_dir`` (default: the cache).

    A file already there that passes the layout check is returned as is. The download goes
    to a temporary name in ``dest_dir``, is checked against the network layout (``config``,
    default vox-256) and renamed when complete; a failed or invalid download leaves nothing
    behind. ``timeout`` bounds the connection and every read, so an unreachable server fails
    within seconds with a :class:`WeightsError` that says where else to get the file.
    """
    url = official_url(size)
    folder = Path(dest_dir) if dest_dir is not None else default_cache_dir()
    final = folder / cached_name(size)
    if final.is_file():
        try:
            checkpoint.load_checkpoint(final, config)
        except WeightsError as exc:
            log.warning("%s is unusable, downloading it again: %s", final, exc)
        else:
            log.info("FOMM %d weights already in %s", size, final)
            return final
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the weights folder {folder}: {exc}") from exc
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(url, out, timeout=timeout, progress=progress, final=final)
        try:
            checkpoint.load_checkpoint(tmp, config)
        except WeightsError as exc:
            raise WeightsError(f"the file downloaded from {url} is not a usable FOMM "
                               f"checkpoint: {exc}") from exc
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("saved FOMM %d weights to %s (sha256 %s)", size, final, digest)
    return final


def _download(url: str, out: IO[bytes], *, timeout: float, progress: bool, final: Path) -> str:
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "mimicam"})
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=final.name, disable=not progress, leave=False) as bar:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            reason: object = f"HTTP {exc.code} {exc.reason}"
        elif isinstance(exc, urllib.error.URLError):
            reason = exc.reason
        else:
            reason = exc
        raise WeightsError(f"could not download the FOMM weights from {url} ({reason}); "
                           + _where_else(url, final)) from exc
    if total is not None and received != total:
        raise WeightsError(f"the download from {url} stopped after {received} of {total} "
                           "bytes; " + _where_else(url, final))
    return digest.hexdigest()


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class WeightsInfo:
    """What :func:`inspect_weights` found; ``text`` is the human-readable report."""

    path: Path
    format: str
    report: checkpoint.LayoutReport
    sha256: str
    text: str


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def inspect_weights(path: str | Path, config: FommConfig | None = None) -> WeightsInfo:
    """Read a checkpoint and describe it: format, sections, counts, layout check, sha256.

    Raises :class:`WeightsError` only when the file cannot be read at all; a layout mismatch
    is reported in the result (``report.ok``).
    """
    ckpt = checkpoint.open_checkpoint(path)
    expected = checkpoint.expected_layout(config)
    state = {name: dict(section) for name, section in ckpt.state.items()}
    repaired = checkpoint.repair_gaussians(
        state, expected, config if config is not None else checkpoint.default_config(), None)
    report = checkpoint.check_layout(state, expected)
    sha = sha256_of(ckpt.path)
    lines = [f"file:     {ckpt.path} ({ckpt.path.stat().st_size:,} bytes)",
             f"format:   {ckpt.format}",
             f"top-level keys: {', '.join(ckpt.top_level_keys) or '(none)'}"]
    for name in checkpoint.SECTIONS:
        section = ckpt.state.get(name)
        want = expected.get(name, [])
        want_numel = sum(int(np.prod(shape, dtype=np.int64)) for _k, shape, _d in want)
        if section is None:
            lines.append(f"{name}: absent (expected {len(want)} keys, {want_numel:,} values)")
            continue
        numel = sum(int(v.size) for v in section.values())
        dtypes = sorted({v.dtype.name for v in section.values()})
        lines.append(f"{name}: {len(section)} keys, {numel:,} values ({', '.join(dtypes)}); "
                     f"expected {len(want)} keys, {want_numel:,} values")
    lines.extend(f"note: {note}" for note in ckpt.notes)
    lines.extend(f"note: {key} absent, will be recomputed" for key in repaired)
    for s in report.sections:
        lines.extend(f"note: {s.name}.{k} is {g}, will be cast to {e}" for k, e, g in s.dtype_cast)
    lines.append(f"layout:   {'OK' if report.ok else 'MISMATCH: ' + report.summary()}")
    lines.append(f"sha256:   {sha}")
    return WeightsInfo(ckpt.path, ckpt.format, report, sha, "\n".join(lines))


def weights_info(path: str | Path, config: FommConfig | None = None) -> str:
    """A multi-line description of a checkpoint file (see :func:`inspect_weights`)."""
    return inspect_weights(path, config).text
