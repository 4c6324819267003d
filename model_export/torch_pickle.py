"""Read PyTorch checkpoint files (``torch.save``) without torch.

Two container formats exist:

* **legacy** (torch < 1.6, and every official FOMM ``.pth.tar``): five pickles in a row (a
  magic number, the protocol version 1001, a ``sys_info`` dict, the main object, the list of
  storage keys), then the raw bytes of each storage in that list's order, each one prefixed
  by its element count as an 8-byte integer.
* **zip** (torch >= 1.6): a zip archive holding ``<name>/data.pkl`` (the main object) and one
  record ``<name>/data/<key>`` with the raw bytes of each storage, plus ``<name>/byteorder``.

In both, tensors appear in the main pickle as calls of ``torch._utils._rebuild_tensor_v2``
on a *persistent id* naming a storage. The unpickler here is restricted: it resolves only the
few globals a state dict needs (``collections.OrderedDict``, the tensor/parameter rebuild
functions, the ``torch.*Storage`` types, a few builtins) to local stand-ins, and refuses
anything else with an error naming the global, so a checkpoint can never run code. Storage
locations (``cpu``, ``cuda:0`` ...) are ignored. Tensors become numpy arrays; top-level entries
that were not asked for are described by :class:`TensorStub` and never read.
"""

from __future__ import annotations

import collections
import io
import logging
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np

from calibrate.errors import WeightsError

log = logging.getLogger(__name__)

FORMAT_LEGACY = "torch-legacy"
FORMAT_ZIP = "torch-zip"

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"
# The magic number pickled with protocol 2: PROTO 2, LONG1 of 10 bytes, then the number itself.
LEGACY_HEADER = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")

# torch storage class name -> numpy dtype of one element. BFloat16 has no numpy dtype: it is
# read as uint16 and widened to float32 (exact) when a tensor is built.
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
    "UntypedStorage": "u1",
}


@dataclass(frozen=True)
class TensorStub:
    """A tensor that was not read (its top-level entry was not selected)."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class TorchCheckpoint:
    """What :func:`read_torch_file` found in a file."""

    format: str  # FORMAT_LEGACY or FORMAT_ZIP
    data: Any  # the unpickled object: dicts, lists, numbers, np.ndarray, TensorStub


def sniff_torch_format(path: str | Path) -> str | None:
    """``FORMAT_ZIP``, ``FORMAT_LEGACY`` or None, from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(len(LEGACY_HEADER))
    if head.startswith(ZIP_MAGIC):
        return FORMAT_ZIP
    if head == LEGACY_HEADER:
        return FORMAT_LEGACY
    return None


# --------------------------------------------------------------------------- stand-ins


class _StorageType:
    """Stands for a ``torch.<Name>Storage`` class inside the unpickler."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: str) -> None:
        self.name = name
        self.dtype = np.dtype(dtype).newbyteorder("<")


class _Storage:
    """A storage named by a persistent id; ``view`` is (offset, numel) into the root one."""

    __slots__ = ("dtype", "key", "numel", "storage_type", "view")

    def __init__(self, storage_type: _StorageType, key: str, numel: int,
                 view: tuple[int, int] | None) -> None:
        self.storage_type = storage_type
        self.dtype = storage_type.dtype
        self.key = key
        self.numel = numel
        self.view = view


class _Tensor:
    """A tensor to build once its storage bytes are available."""

    __slots__ = ("offset", "shape", "storage", "stride")

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...],
                 stride: tuple[int, ...]) -> None:
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.stride = stride


class _TypeMarker:
    """Stands for ``torch.Tensor`` / ``torch.nn.Parameter`` (only passed around, never built)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, int):  # torch.Size pickles as a tuple; be lenient with a bare int
        value = (value,)
    if not isinstance(value, tuple | list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"tensor {what} must be a tuple of non-negative ints, "
                                     f"got {value!r}")
    return tuple(int(v) for v in value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any,
                    *_ignored: Any, **_kw: Any) -> _Tensor:
    # Stands for torch._utils._rebuild_tensor (4 args) and _rebuild_tensor_v2 (6 or 7 args:
    # + requires_grad, backward_hooks, metadata); the extra arguments do not matter here.
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"tensor rebuilt from {type(storage).__name__}, "
                                     "expected a storage persistent id")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError(f"tensor storage offset must be an int >= 0, "
                                     f"got {storage_offset!r}")
    shape = _as_int_tuple(size, "size")
    strides = _as_int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise pickle.UnpicklingError(f"tensor size {shape} and stride {strides} differ in rank")
    return _Tensor(storage, storage_offset, shape, strides)


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    # Stands for _rebuild_parameter(data, requires_grad, hooks) and
    # _rebuild_parameter_with_state(data, requires_grad, hooks, state): a Parameter is its data.
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # torch pickles tensors with extra Python state this way; only our own rebuild functions
    # can arrive as ``func`` because find_class resolves nothing else.
    if func not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(args, tuple):
        raise pickle.UnpicklingError("unsupported _rebuild_from_type_v2 payload")
    return func(*args)


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "ascii"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) "
                                     "is not a plain bytes literal")
    return text.encode(encoding)


SAFE_BUILTINS: dict[str, Any] = {
    "set": set, "frozenset": frozenset, "complex": complex, "bytearray": bytearray,
    "tuple": tuple, "list": list, "dict": dict, "int": int, "float": float, "bool": bool,
    "str": str, "bytes": bytes, "slice": slice, "range": range,
}

_REBUILD_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_tensor_v2": _rebuild_tensor,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter,
    "_rebuild_from_type_v2": _rebuild_from_type_v2,
}


def resolve_common_global(module: str, name: str) -> Any | None:
    """The stand-in for a global that is safe in any checkpoint pickle, else None."""
    if module in ("builtins", "__builtin__") and name in SAFE_BUILTINS:
        return SAFE_BUILTINS[name]
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module == "_codecs" and name == "encode":
        return _codecs_encode
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles the main object of a torch file with stand-ins for the allowed globals."""

    def __init__(self, file: IO[bytes], *, path: Path, legacy: bool) -> None:
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._legacy = legacy
        self.storages: dict[str, _Storage] = {}  # root storages by key

    def find_class(self, module: str, name: str) -> Any:
        found = resolve_common_global(module, name)
        if found is not None:
            return found
        if module in ("torch", "torch.cuda") and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        if module in ("torch._utils", "torch._tensor", "torch.tensor") \
                and name in _REBUILD_FUNCTIONS:
            return _REBUILD_FUNCTIONS[name]
        if (module, name) in (("torch", "Tensor"), ("torch._tensor", "Tensor"),
                              ("torch.nn.parameter", "Parameter"), ("torch.nn", "Parameter")):
            return _TypeMarker(f"{module}.{name}")
        raise WeightsError(
            f"{self._path}: refusing to load: the checkpoint references the Python global "
            f"{module}.{name}, which a weights file does not need (only tensors, dicts, "
            "lists and numbers are allowed); nothing from the file was executed")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"persistent id must be a tuple, got {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":
            raise pickle.UnpicklingError(
                "the file holds a whole pickled nn.Module; expected a state dict")
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id type {kind!r}")
        expected_len = 6 if self._legacy else 5
        if len(pid) != expected_len:
            raise pickle.UnpicklingError(
                f"storage persistent id has {len(pid)} fields, expected {expected_len}")
        storage_type, key, _location, numel = pid[1:5]
        view_meta = pid[5] if self._legacy else None
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"storage type must be a torch.*Storage, "
                                         f"got {storage_type!r}")
        key = str(key.decode("ascii") if isinstance(key, bytes) else key)
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"storage {key}: size must be an int >= 0, got {numel!r}")
        root = self.storages.get(key)
        if root is None:
            root = _Storage(storage_type, key, numel, None)
            self.storages[key] = root
        elif root.dtype != storage_type.dtype:
            raise pickle.UnpicklingError(f"storage {key} is used as {root.storage_type.name} and "
                                         f"as {storage_type.name}")
        if view_meta is None:
            return root
        if not (isinstance(view_meta, tuple) and len(view_meta) == 3):
            raise pickle.UnpicklingError(f"storage view metadata must be (key, offset, size), "
                                         f"got {view_meta!r}")
        _view_key, view_offset, view_numel = view_meta
        if not (isinstance(view_offset, int) and isinstance(view_numel, int)
                and view_offset >= 0 and view_numel >= 0 and view_offset + view_numel <= numel):
            raise pickle.UnpicklingError(f"storage view {view_meta!r} lies outside storage {key} "
                                         f"of {numel} elements")
        return _Storage(storage_type, key, view_numel, (view_offset, view_numel))


def _restricted_plain_load(f: IO[bytes], path: Path) -> Any:
    """A pickle with no torch objects in it (storage keys list, sys_info)."""

    class Plain(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            found = resolve_common_global(module, name)
            if found is None:
                raise WeightsError(f"{path}: refusing to load: unexpected Python global "
                                   f"{module}.{name} in the checkpoint header")
            return found

    return Plain(f, encoding="utf-8").load()


# --------------------------------------------------------------------------- tree walking


def _walk_tensors(obj: Any) -> Iterator[_Tensor]:
    if isinstance(obj, _Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _walk_tensors(value)
    elif isinstance(obj, list | tuple | set | frozenset):
        for value in obj:
            yield from _walk_tensors(value)


def _replace(obj: Any, convert: Callable[[_Tensor], Any]) -> Any:
    """Copy of ``obj`` with plain dicts for OrderedDicts and ``convert(t)`` for tensors."""
    if isinstance(obj, _Tensor):
        return convert(obj)
    if isinstance(obj, dict):
        return {k: _replace(v, convert) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace(v, convert) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_replace(v, convert) for v in obj)
    if isinstance(obj, _TypeMarker | _StorageType | _Storage):
        return repr(obj)
    return obj


def _selected(data: Any, keys: Collection[str] | None) -> Any:
    """The part of the top level whose tensors are to be read."""
    if keys is None or not isinstance(data, dict):
        return data
    return {k: v for k, v in data.items() if k in keys}


def _build_tensor(t: _Tensor, root_array: np.ndarray, path: Path) -> np.ndarray:
    storage = t.storage
    base = root_array
    if storage.view is not None:
        start, count = storage.view
        base = root_array[start:start + count]
    numel = int(np.prod(t.shape, dtype=np.int64))
    if numel == 0:
        out = np.empty(t.shape, dtype=base.dtype)
    else:
        last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride, strict=True))
        if last >= base.size:
            raise WeightsError(
                f"{path}: corrupt checkpoint: a tensor of shape {list(t.shape)} with stride "
                f"{list(t.stride)} at offset {t.offset} reaches element {last}, but its storage "
                f"{storage.key} holds {base.size} elements")
        contiguous = tuple(int(np.prod(t.shape[i + 1:], dtype=np.int64))
                           for i in range(len(t.shape)))
        if t.offset == 0 and numel == base.size and all(
                s == c for n, s, c in zip(t.shape, t.stride, contiguous, strict=True) if n > 1):
            out = base.reshape(t.shape)  # the whole storage, in order: no copy
        else:
            view = np.lib.stride_tricks.as_strided(
                base[t.offset:], shape=t.shape,
                strides=tuple(s * base.itemsize for s in t.stride), writeable=False)
            out = np.array(view, copy=True, order="C")
    if storage.storage_type.name == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _native(buf: bytearray, dtype: np.dtype) -> np.ndarray:
    """A writable 1-D array of ``dtype`` (which has the file's byte order) in native order."""
    array = np.frombuffer(buf, dtype=dtype)
    if not array.dtype.isnative:
        array = array.byteswap().view(array.dtype.newbyteorder("="))
    return array


def _finish(data: Any, keys: Collection[str] | None, roots: dict[str, np.ndarray],
            path: Path) -> Any:
    cache: dict[int, np.ndarray] = {}

    def build(t: _Tensor) -> np.ndarray:
        got = cache.get(id(t))
        if got is None:
            got = _build_tensor(t, roots[t.storage.key], path)
            cache[id(t)] = got
        return got

    def stub(t: _Tensor) -> TensorStub:
        name = "bfloat16" if t.storage.storage_type.name == "BFloat16Storage" \
            else t.storage.dtype.newbyteorder("=").name
        return TensorStub(t.shape, name)

    if keys is None or not isinstance(data, dict):
        return _replace(data, build)
    return {k: _replace(v, build if k in keys else stub) for k, v in data.items()}


def _needed_storages(data: Any, keys: Collection[str] | None) -> set[str]:
    return {t.storage.key for t in _walk_tensors(_selected(data, keys))}


# --------------------------------------------------------------------------- legacy format


def _read_legacy(path: Path, keys: Collection[str] | None) -> Any:
    with open(path, "rb") as f:
        magic = _restricted_plain_load(f, path)
        if magic != LEGACY_MAGIC:
            raise WeightsError(f"{path}: not a torch legacy checkpoint: expected magic number "
                               f"{LEGACY_MAGIC:#x}, got {magic!r}")
        protocol = _restricted_plain_load(f, path)
        if protocol != LEGACY_PROTOCOL:
            raise WeightsError(f"{path}: unsupported torch legacy protocol: expected "
                               f"{LEGACY_PROTOCOL}, got {protocol!r}")
        sys_info = _restricted_plain_load(f, path)
        little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) \
            else True
        unpickler = _RestrictedUnpickler(f, path=path, legacy=True)
        data = unpickler.load()
        storage_keys = _restricted_plain_load(f, path)
        if not isinstance(storage_keys, list):
            raise WeightsError(f"{path}: corrupt torch legacy checkpoint: expected the list of "
                               f"storage keys after the main pickle, got {type(storage_keys)}")
        needed = _needed_storages(data, keys)
        order: Literal["<", ">"] = "<" if little else ">"
        file_size = path.stat().st_size
        roots: dict[str, np.ndarray] = {}
        for raw_key in storage_keys:
            key = str(raw_key)
            storage = unpickler.storages.get(key)
            if storage is None:
                raise WeightsError(f"{path}: corrupt torch legacy checkpoint: storage key {key} "
                                   "is listed but no tensor uses it")
            header = f.read(8)
            if len(header) != 8:
                raise WeightsError(f"{path}: truncated torch checkpoint: the file ends before "
                                   f"storage {key} (file size {file_size} bytes)")
            count = int.from_bytes(header, "little" if little else "big", signed=True)
            if count != storage.numel:
                raise WeightsError(f"{path}: corrupt torch legacy checkpoint: storage {key} "
                                   f"should hold {storage.numel} elements, its header says "
                                   f"{count}")
            nbytes = count * storage.dtype.itemsize
            start = f.tell()
            if start + nbytes > file_size:
                raise WeightsError(
                    f"{path}: truncated torch checkpoint: storage {key} needs {nbytes} bytes at "
                    f"offset {start}, but the file has only {file_size - start} left")
            if key in needed:
                buf = bytearray(nbytes)
                if f.readinto(buf) != nbytes:
                    raise WeightsError(f"{path}: truncated torch checkpoint in storage {key}")
                roots[key] = _native(buf, storage.dtype.newbyteorder(order))
            else:
                f.seek(nbytes, io.SEEK_CUR)
        missing = needed - roots.keys()
        if missing:
            raise WeightsError(f"{path}: corrupt torch legacy checkpoint: no data for storages "
                               f"{sorted(missing)[:5]}")
    return _finish(data, keys, roots, path)


# --------------------------------------------------------------------------- zip format


def _read_zip(path: Path, keys: Collection[str] | None) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise WeightsError(f"{path}: unreadable torch zip checkpoint (truncated or corrupt?): "
                           f"{exc}") from exc
    with archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise WeightsError(f"{path}: not a torch checkpoint: expected a zip archive with "
                               f"<name>/data.pkl, got records {names[:5]}")
        prefix = pkl[0][: -len("data.pkl")]
        if prefix + "constants.pkl" in names:
            raise WeightsError(f"{path}: this is a TorchScript archive (torch.jit.save), "
                               "expected a torch.save checkpoint")
        order: Literal["<", ">"] = "<"
        if prefix + "byteorder" in names:
            mark = archive.read(prefix + "byteorder").strip()
            if mark not in (b"little", b"big"):
                raise WeightsError(f"{path}: unknown byte order {mark!r} in the checkpoint, "
                                   "expected little or big")
            order = "<" if mark == b"little" else ">"
        try:
            unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pkl[0])), path=path,
                                             legacy=False)
            data = unpickler.load()
            roots: dict[str, np.ndarray] = {}
            for key in sorted(_needed_storages(data, keys)):
                storage = unpickler.storages[key]
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise WeightsError(f"{path}: corrupt torch zip checkpoint: record {record} "
                                       "is missing")
                nbytes = storage.numel * storage.dtype.itemsize
                buf = bytearray(nbytes)
                with archive.open(record) as member:
                    got = cast(io.BufferedIOBase, member).readinto(buf)
                if got != nbytes:
                    raise WeightsError(f"{path}: corrupt torch zip checkpoint: record {record} "
                                       f"has {got} bytes, expected {nbytes}")
                roots[key] = _native(buf, storage.dtype.newbyteorder(order))
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise WeightsError(f"{path}: unreadable torch zip checkpoint (truncated or "
                               f"corrupt?): {exc}") from exc
    return _finish(data, keys, roots, path)


# --------------------------------------------------------------------------- public


def read_torch_file(path: str | Path, *, keys: Collection[str] | None = None) -> TorchCheckpoint:
    """Read a ``torch.save`` file (legacy or zip format) without torch.

    ``keys``: if the file holds a dict, only these top-level entries have their tensors read
    (as numpy arrays); tensors under the other entries become :class:`TensorStub`. None reads
    everything. Raises :class:`WeightsError` for a file that is not a torch checkpoint, is
    truncated or corrupt, or references any Python global beyond the few a state dict needs.
    """
    path = Path(path)
    fmt = sniff_torch_format(path)
    if fmt is None:
        raise WeightsError(f"{path}: not a torch checkpoint: expected a zip archive or the "
                           "torch legacy magic number at the start of the file")
    try:
        data = _read_zip(path, keys) if fmt == FORMAT_ZIP else _read_legacy(path, keys)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, struct.error, MemoryError, RecursionError) as exc:
        raise WeightsError(f"{path}: unreadable torch checkpoint ({fmt}; truncated or "
                           f"corrupt?): {type(exc).__name__}: {exc}") from exc
    return TorchCheckpoint(fmt, data)
