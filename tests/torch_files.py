"""Write torch checkpoint files without torch, for tests of the torch-free reader.

The writer pickles :class:`FakeTensor` objects exactly as ``torch.save`` pickles tensors: a
call of ``torch._utils._rebuild_tensor_v2`` on a persistent id naming a storage. For the
duration of a write, stand-in ``torch`` / ``torch._utils`` modules are registered so pickle
can name those globals; they are removed afterwards (torch itself is never imported).
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import sys
import types
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_NAMES = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
                 "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage",
                 "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage",
                 "bfloat16": "BFloat16Storage"}


@dataclass(eq=False)
class FakeStorage:
    """Flat storage data; ``dtype_name`` 'bfloat16' means ``data`` holds the uint16 bits."""

    data: np.ndarray
    dtype_name: str
    key: str = ""
    location: str = "cpu"


@dataclass(eq=False)
class FakeTensor:
    storage: FakeStorage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    view: tuple[str, int, int] | None = None  # legacy view metadata (view_key, offset, size)
    fields: dict[str, Any] = field(default_factory=dict)


def tensor(array: np.ndarray, *, location: str = "cpu") -> FakeTensor:
    """A contiguous tensor owning its storage."""
    array = np.array(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    storage = FakeStorage(array.reshape(-1).copy(), array.dtype.name, location=location)
    stride = tuple(int(np.prod(array.shape[i + 1:], dtype=np.int64))
                   for i in range(array.ndim))
    return FakeTensor(storage, 0, tuple(array.shape), stride)


def bfloat16_tensor(values: np.ndarray) -> FakeTensor:
    """A bfloat16 tensor holding the upper 16 bits of float32 ``values``."""
    bits = (np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    t = tensor(bits)
    t.storage.dtype_name = "bfloat16"
    return t


@contextlib.contextmanager
def _fake_torch() -> Iterator[types.SimpleNamespace]:
    if "torch" in sys.modules:
        raise RuntimeError("torch is imported; these helpers are for torch-free tests")
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    storages = {}
    for name in STORAGE_NAMES.values():
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
        storages[name] = cls

    def _rebuild_tensor_v2(*args: Any) -> None:  # only its name is pickled
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    torch._utils = utils  # type: ignore[attr-defined]
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    try:
        yield types.SimpleNamespace(storages=storages, rebuild=_rebuild_tensor_v2)
    finally:
        del sys.modules["torch"]
        del sys.modules["torch._utils"]


class _Pickler(pickle.Pickler):
    def __init__(self, file: Any, fake: types.SimpleNamespace, legacy: bool) -> None:
        super().__init__(file, protocol=2)
        self.fake = fake
        self.legacy = legacy
        self.storages: dict[str, FakeStorage] = {}
        self._pending_view: tuple[str, int, int] | None = None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, FakeTensor):
            self._pending_view = obj.view
            return self.fake.rebuild, (obj.storage, obj.offset, obj.shape, obj.stride, False,
                                       collections.OrderedDict())
        return NotImplemented

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, FakeStorage):
            return None
        if not obj.key:
            obj.key = str(len(self.storages))
        self.storages[obj.key] = obj
        cls = self.fake.storages[STORAGE_NAMES[obj.dtype_name]]
        if self.legacy:
            return ("storage", cls, obj.key, obj.location, int(obj.data.size),
                    self._pending_view)
        return ("storage", cls, obj.key, obj.location, int(obj.data.size))


def write_legacy(path: str | Path, obj: Any, *, little_endian: bool = True) -> Path:
    """``torch.save(obj, path, _use_new_zipfile_serialization=False)`` equivalent."""
    path = Path(path)
    order = "<" if little_endian else ">"
    body = io.BytesIO()
    with _fake_torch() as fake:
        pickler = _Pickler(body, fake, legacy=True)
        pickler.dump(obj)
    with open(path, "wb") as f:
        pickle.dump(MAGIC, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": little_endian,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        f.write(body.getvalue())
        keys = sorted(pickler.storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            data = pickler.storages[key].data
            f.write(int(data.size).to_bytes(8, "little" if little_endian else "big"))
            f.write(data.astype(data.dtype.newbyteorder(order)).tobytes())
    return path


def write_zip(path: str | Path, obj: Any, *, archive: str = "archive") -> Path:
    """``torch.save(obj, path)`` (zip format) equivalent."""
    path = Path(path)
    body = io.BytesIO()
    with _fake_torch() as fake:
        pickler = _Pickler(body, fake, legacy=False)
        pickler.dump(obj)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", body.getvalue())
        z.writestr(f"{archive}/byteorder", "little")
        for key, storage in pickler.storages.items():
            z.writestr(f"{archive}/data/{key}", storage.data.astype(
                storage.data.dtype.newbyteorder("<")).tobytes())
        z.writestr(f"{archive}/version", "3\n")
    return path
