"""FOMM checkpoints: read (PaddleGAN ``.pdparams`` or torch ``.pth.tar``), check, convert.

A checkpoint here is ``{'generator': {key: ndarray}, 'kp_detector': {key: ndarray}}`` with
PaddleGAN key names, in the order of the network's ``state_dict``. Files are recognised by
their content, not their name:

* zip archive or the torch legacy magic number: a ``torch.save`` file of the original
  first-order-model (read by :mod:`model_export.torch_pickle`, no torch needed). BatchNorm
  keys are renamed (``running_mean`` -> ``_mean``, ``running_var`` -> ``_variance``) and
  ``num_batches_tracked`` is dropped; nothing is transposed (there are no Linear layers).
* any other pickle: a PaddleGAN ``.pdparams`` (``paddle.save``), read with a restricted
  unpickler that only rebuilds numpy arrays (paddle is not imported). Values are arrays or
  ``(internal name, array)`` tuples.

Top-level entries other than ``generator`` and ``kp_detector`` (discriminator, optimizer
states, epoch) are ignored and never read into memory. Inside those two sections the key set,
shapes and dtypes must match the network exactly (:func:`check_layout`); a mismatch is a
:class:`calibrate.errors.WeightsError` listing what is wrong, never a partial load. The only repair
is the fixed Gaussian anti-alias kernel ``down.weight``, which is recomputed when absent.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibrate.errors import WeightsError
from model_export import torch_pickle

if TYPE_CHECKING:
    from model_export.fomm.config import FommConfig

log = logging.getLogger(__name__)

SECTIONS: tuple[str, ...] = ("generator", "kp_detector")
FORMAT_PADDLE = "paddle-pickle"
FORMAT_TORCH_LEGACY = torch_pickle.FORMAT_LEGACY
FORMAT_TORCH_ZIP = torch_pickle.FORMAT_ZIP

LayoutEntry = tuple[str, tuple[int, ...], str]  # (key, shape, numpy dtype name)
Layout = dict[str, list[LayoutEntry]]
State = dict[str, dict[str, np.ndarray]]

# The anti-alias Gaussian buffers: key in its section -> which scale factor made it.
_GAUSSIAN_KEYS = {("kp_detector", "down.weight"): "kp_detector",
                  ("generator", "dense_motion_network.down.weight"): "dense_motion"}


def default_config() -> FommConfig:
    """The configuration checked when none is given: vox-256 (PaddleGAN's 512 file too)."""
    from model_export.fomm.config import FommConfig

    return FommConfig.vox256()


# --------------------------------------------------------------------------- expected layout


def expected_layout(config: FommConfig | None = None) -> Layout:
    """Every (key, shape, dtype) of the networks built from ``config``, in state_dict order.

    Derived from the network itself (``model_export.fomm.build_networks``), so it can never
    disagree with what :func:`model_export.fomm.load_state` accepts. Cached per config.
    """
    layout = _layout_cached(config if config is not None else default_config())
    return {name: list(entries) for name, entries in layout.items()}


@functools.lru_cache(maxsize=4)
def _layout_cached(config: FommConfig) -> dict[str, tuple[LayoutEntry, ...]]:
    import paddle

    from model_export.fomm import build_networks

    # LazyGuard defers parameter initialisation: the shapes are known, no memory is filled.
    with paddle.LazyGuard():
        kp_detector, generator = build_networks(config, inference=True)
    out: dict[str, tuple[LayoutEntry, ...]] = {}
    for name, net in (("generator", generator), ("kp_detector", kp_detector)):
        out[name] = tuple((key, tuple(int(d) for d in value.shape),
                           str(value.dtype).rsplit(".", 1)[-1])
                          for key, value in net.state_dict().items())
    return out


def gaussian_kernel(scale: float, channels: int) -> np.ndarray:
    """The anti-alias kernel FOMM's AntiAliasInterpolation2d stores: [channels, 1, k, k].

    sigma = (1/scale - 1)/2, k = 2*round(4 sigma) + 1, a separable Gaussian centred on
    (k-1)/2, normalised to sum 1 (float32, as the checkpoints hold it).
    """
    sigma = (1.0 / scale - 1.0) / 2.0
    size = 2 * round(sigma * 4) + 1
    grid = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    one_d = np.exp(-(grid ** 2) / (2.0 * sigma ** 2 + 1e-9))
    kernel = np.outer(one_d, one_d)
    kernel /= kernel.sum()
    return np.ascontiguousarray(
        np.broadcast_to(kernel.astype(np.float32), (channels, 1, size, size)))


# --------------------------------------------------------------------------- layout check


@dataclass(frozen=True)
class SectionReport:
    """How one section (generator or kp_detector) compares with the expected layout."""

    name: str
    present: bool
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    shape_mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    dtype_mismatched: tuple[tuple[str, str, str], ...] = ()  # (key, expected, got), fatal
    dtype_cast: tuple[tuple[str, str, str], ...] = ()  # float of another width: cast on load

    @property
    def ok(self) -> bool:
        return self.present and not (self.missing or self.unexpected or self.shape_mismatched
                                     or self.dtype_mismatched)


@dataclass(frozen=True)
class LayoutReport:
    """Result of :func:`check_layout`; ``ok`` when the checkpoint can be loaded as is."""

    sections: tuple[SectionReport, ...]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sections)

    def section(self, name: str) -> SectionReport:
        for s in self.sections:
            if s.name == name:
                return s
        raise KeyError(name)

    def summary(self, limit: int = 5) -> str:
        """One line per problem kind, first ``limit`` keys of each with the total count."""
        parts: list[str] = []

        def listing(items: Sequence[str]) -> str:
            more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        for s in self.sections:
            if not s.present:
                parts.append(f"{s.name}: section missing")
                continue
            if s.missing:
                parts.append(f"{s.name}: {len(s.missing)} missing key(s): {listing(s.missing)}")
            if s.unexpected:
                parts.append(f"{s.name}: {len(s.unexpected)} unexpected key(s): "
                             f"{listing(s.unexpected)}")
            if s.shape_mismatched:
                items = [f"{k} expected {list(e)} got {list(g)}" for k, e, g in s.shape_mismatched]
                parts.append(f"{s.name}: {len(items)} shape mismatch(es): {listing(items)}")
            if s.dtype_mismatched:
                items = [f"{k} expected {e} got {g}" for k, e, g in s.dtype_mismatched]
                parts.append(f"{s.name}: {len(items)} dtype mismatch(es): {listing(items)}")
        return "; ".join(parts) if parts else "layout OK"


def check_layout(state: Mapping[str, Mapping[str, Any]], expected: Mapping[str, Sequence[
        LayoutEntry]]) -> LayoutReport:
    """Compare ``state`` (section -> key -> array) with ``expected`` (from expected_layout).

    Extra top-level sections in ``state`` are not reported (callers only pass the sections
    they read). A floating-point array of another width than expected is castable, not an
    error; any other dtype difference is.
    """
    reports = []
    for name, entries in expected.items():
        section = state.get(name)
        if section is None:
            reports.append(SectionReport(name, present=False,
                                         missing=tuple(e[0] for e in entries)))
            continue
        want = {key: (tuple(shape), dtype) for key, shape, dtype in entries}
        missing = tuple(key for key, _s, _d in entries if key not in section)
        unexpected = tuple(key for key in section if key not in want)
        shapes, dtypes, casts = [], [], []
        for key, value in section.items():
            if key not in want:
                continue
            shape, dtype = want[key]
            got_shape = tuple(int(d) for d in np.shape(value))
            if got_shape != shape:
                shapes.append((key, shape, got_shape))
            got_dtype = np.asarray(value).dtype
            if got_dtype != np.dtype(dtype):
                if got_dtype.kind == "f" and np.dtype(dtype).kind == "f":
                    casts.append((key, dtype, got_dtype.name))
                else:
                    dtypes.append((key, dtype, got_dtype.name))
        reports.append(SectionReport(name, True, missing, unexpected, tuple(shapes),
                                     tuple(dtypes), tuple(casts)))
    return LayoutReport(tuple(reports))


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CheckpointFile:
    """What :func:`open_checkpoint` found: the format, the top-level keys, the sections."""

    path: Path
    format: str  # FORMAT_PADDLE, FORMAT_TORCH_LEGACY or FORMAT_TORCH_ZIP
    top_level_keys: tuple[str, ...]
    state: State
    notes: tuple[str, ...] = ()  # renames and skips applied while reading


def detect_format(path: str | Path) -> str:
    """The checkpoint format from the file's first bytes; WeightsError when none fits."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file")
    fmt = torch_pickle.sniff_torch_format(path)
    if fmt is not None:
        return fmt
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return FORMAT_PADDLE
    raise WeightsError(f"{path}: unknown checkpoint format: expected a PaddleGAN .pdparams "
                       "(a pickle) or a torch .pth.tar (legacy or zip), got first bytes "
                       f"{head!r}" + (" (empty file)" if not head else ""))


_NUMPY_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's own _reconstruct, whatever module
_NUMPY_SCALAR = np.float32(0).__reduce__()[0]


class _PaddleUnpickler(pickle.Unpickler):
    """Rebuilds dicts, tuples and numpy arrays; refuses every other global."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled by Python 2
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        found = torch_pickle.resolve_common_global(module, name)
        if found is not None:
            return found
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            if name == "_reconstruct":
                return _NUMPY_RECONSTRUCT
            if name == "scalar":
                return _NUMPY_SCALAR
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise WeightsError(
            f"{self._path}: refusing to load: the checkpoint references the Python global "
            f"{module}.{name}, which a weights file does not need (only numpy arrays, dicts, "
            "tuples and numbers are allowed); nothing from the file was executed")


def _array_of(value: Any) -> np.ndarray | None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        value = value[1]
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return value
    return None


def _read_paddle(path: Path) -> tuple[Any, State, list[str]]:
    try:
        with open(path, "rb") as f:
            data = _PaddleUnpickler(f, path).load()
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, MemoryError, RecursionError) as exc:
        raise WeightsError(f"{path}: unreadable PaddleGAN checkpoint (truncated or corrupt?): "
                           f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a dict with sections {', '.join(SECTIONS)}, "
                           f"got a pickled {type(data).__name__}")
    notes: list[str] = []
    state: State = {}
    for name in SECTIONS:
        section = data.get(name)
        if not isinstance(section, dict):
            continue
        out: dict[str, np.ndarray] = {}
        for key, value in section.items():
            array = _array_of(value)
            if array is None:  # e.g. paddle 2.0's "StructuredToParameterName@@" name map
                notes.append(f"{name}: skipped non-array entry {key!r}")
                continue
            out[str(key)] = array
        state[name] = out
    return data, state, notes


def map_torch_key(key: str) -> str | None:
    """The PaddleGAN name of a first-order-model state-dict key; None for dropped keys."""
    if key.endswith(".num_batches_tracked"):
        return None
    if key.endswith(".running_mean"):
        return key[: -len("running_mean")] + "_mean"
    if key.endswith(".running_var"):
        return key[: -len("running_var")] + "_variance"
    return key


def _read_torch(path: Path) -> tuple[str, Any, State, list[str]]:
    loaded = torch_pickle.read_torch_file(path, keys=SECTIONS)
    data = loaded.data
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a torch.save dict with sections "
                           f"{', '.join(SECTIONS)}, got a pickled {type(data).__name__}")
    notes: list[str] = []
    state: State = {}
    for name in SECTIONS:
        section = data.get(name)
        if not isinstance(section, dict):
            continue
        keys = [str(k) for k in section]
        strip = bool(keys) and all(k.startswith("module.") for k in keys)
        if strip:
            notes.append(f"{name}: stripped the DataParallel prefix 'module.'")
        out: dict[str, np.ndarray] = {}
        dropped = 0
        for key, value in section.items():
            key = str(key)[len("module."):] if strip else str(key)
            mapped = map_torch_key(key)
            if mapped is None:
                dropped += 1
                continue
            if not isinstance(value, np.ndarray):
                notes.append(f"{name}: skipped non-tensor entry {key!r}")
                continue
            out[mapped] = value
        if dropped:
            notes.append(f"{name}: dropped {dropped} num_batches_tracked entries")
        state[name] = out
    return loaded.format, data, state, notes


def open_checkpoint(path: str | Path) -> CheckpointFile:
    """Read the generator and kp_detector sections of any supported checkpoint file."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == FORMAT_PADDLE:
        data, state, notes = _read_paddle(path)
    else:
        fmt, data, state, notes = _read_torch(path)
    for note in notes:
        log.debug("%s: %s", path, note)
    return CheckpointFile(path, fmt, tuple(str(k) for k in data), state, tuple(notes))


def read_checkpoint(path: str | Path) -> State:
    """``{'generator': {...}, 'kp_detector': {...}}`` of numpy arrays, PaddleGAN key names.

    Reads PaddleGAN ``.pdparams`` and torch ``.pth.tar`` (legacy and zip) files, detected by
    content. Sections absent from the file are absent from the result; nothing is checked
    (see :func:`load_checkpoint`).
    """
    return open_checkpoint(path).state


# --------------------------------------------------------------------------- checked loading


def repair_gaussians(state: State, expected: Mapping[str, Sequence[LayoutEntry]],
                      config: FommConfig, path: Path | None) -> list[str]:
    repaired = []
    for (section, key), which in _GAUSSIAN_KEYS.items():
        entries = {e[0]: e for e in expected.get(section, ())}
        if section not in state or key not in entries or key in state[section]:
            continue
        scale = (config.kp_detector.scale_factor if which == "kp_detector"
                 else config.generator.dense_motion.scale_factor)
        kernel = gaussian_kernel(scale, config.num_channels)
        if tuple(kernel.shape) != tuple(entries[key][1]):
            continue  # leave it to the layout check to report
        state[section][key] = kernel
        repaired.append(f"{section}.{key}")
        log.info("%s: %s.%s missing; recomputed the fixed Gaussian kernel (scale %s)",
                 path if path is not None else "checkpoint", section, key, scale)
    return repaired


def validate_state(state: State, config: FommConfig | None = None, *,
                   source: str | Path | None = None) -> State:
    """Check ``state`` against the network layout; return it ordered, float32, repaired.

    Missing ``down.weight`` Gaussian buffers are recomputed (and logged). Any other missing,
    unexpected, mis-shaped or non-float entry raises :class:`WeightsError` naming the keys.
    """
    config = config if config is not None else default_config()
    expected = expected_layout(config)
    state = {name: dict(section) for name, section in state.items() if name in expected}
    where = Path(source) if source is not None else None
    repair_gaussians(state, expected, config, where)
    report = check_layout(state, expected)
    if not report.ok:
        prefix = f"{where}: " if where is not None else ""
        raise WeightsError(f"{prefix}checkpoint does not match the FOMM network layout "
                           f"(expected {_layout_counts(expected)}): {report.summary()}")
    casts = [f"{s.name}.{key} is {got}" for s in report.sections for key, _e, got in s.dtype_cast]
    if casts:
        log.warning("%s%d array(s) cast to the network's dtype: %s", f"{where}: " if where else "",
                    len(casts), ", ".join(casts[:5]) + (" ..." if len(casts) > 5 else ""))
    out: State = {}
    for name, entries in expected.items():
        section = state[name]
        out[name] = {key: section[key] if section[key].dtype == np.dtype(dtype)
                     else section[key].astype(dtype) for key, _shape, dtype in entries}
    return out


def _layout_counts(expected: Mapping[str, Sequence[LayoutEntry]]) -> str:
    return ", ".join(f"{name} {len(entries)} keys" for name, entries in expected.items())


def load_checkpoint(path: str | Path, config: FommConfig | None = None) -> State:
    """Read a checkpoint file and check it against the network built from ``config``.

    Returns ``{'generator': {...}, 'kp_detector': {...}}`` in state_dict order, ready for
    :func:`model_export.fomm.load_state`. Raises :class:`WeightsError` when the file is
    unreadable or its layout differs in any way (the message lists missing, unexpected and
    mis-shaped keys, the first few of each with counts).
    """
    ckpt = open_checkpoint(path)
    return validate_state(ckpt.state, config, source=ckpt.path)


# --------------------------------------------------------------------------- writing


def write_pdparams(state: Mapping[str, Mapping[str, np.ndarray]], dst: str | Path) -> Path:
    """Write ``state`` as a PaddleGAN checkpoint that ``paddle.load`` reads.

    Same layout as ``paddle.save`` of ``{'generator': state_dict, 'kp_detector': ...}``:
    a protocol-4 pickle of OrderedDicts whose values are ``(name, ndarray)`` tuples. Written
    to a temporary file in the destination folder and renamed when complete.
    """
    dst = Path(dst)
    payload = {name: collections.OrderedDict(
        (key, (f"{name}.{key}", np.ascontiguousarray(value))) for key, value in section.items())
        for name, section in state.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(payload, f, protocol=4)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst


def convert_torch_checkpoint(src: str | Path, dst: str | Path,
                             config: FommConfig | None = None) -> Path:
    """Convert a first-order-model ``.pth.tar`` into a PaddleGAN ``.pdparams``.

    The torch file is read without torch, its BatchNorm keys are renamed, and the result is
    checked against the network layout before anything is written (a mismatch raises
    :class:`WeightsError` and leaves ``dst`` untouched).
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and src.resolve() == dst.resolve():
        raise WeightsError(f"{dst}: the output must differ from the input")
    ckpt = open_checkpoint(src)
    if ckpt.format == FORMAT_PADDLE:
        raise WeightsError(f"{src}: already a PaddleGAN checkpoint (a plain pickle), expected "
                           "a torch .pth.tar to convert; use it directly with --weights")
    state = validate_state(ckpt.state, config, source=src)
    write_pdparams(state, dst)
    log.info("%s (%s) -> %s: %s", src, ckpt.format, dst,
             ", ".join(f"{n} {len(s)} keys" for n, s in state.items()))
    return dst
