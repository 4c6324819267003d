"""The manifest of an exported model directory: which graphs it holds and what they take.

A model directory holds one or more inference graphs (Paddle ``.json`` + ``.pdiparams``, and
optionally an ``.onnx`` written from the same program) and ``manifest.json``, which records
for every graph its files and its named inputs and outputs (shape, dtype), plus facts about
the export (precision, weights hash, versions, model configuration).

This module is generic (nothing FOMM-specific): :mod:`model_export.runtime` reads graph specs
from it, and :mod:`model_export.export` adds the FOMM checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.errors import MimicamError

MANIFEST_NAME = "manifest.json"
FORMAT = "mimicam-model"
FORMAT_VERSION = 1


class ManifestError(MimicamError):
    """A model directory or its manifest is missing, damaged or does not match."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named input or output: shape (-1 for a dynamic axis) and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> TensorSpec:
        try:
            name = str(data["name"])
            shape = tuple(int(d) for d in data["shape"])
            dtype = str(data.get("dtype", "float32"))
            np.dtype(dtype)
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                f"{where}: bad tensor entry; expected {{name, shape: [int...], dtype}}, "
                f"got {data!r} ({exc})"
            ) from None
        return cls(name, shape, dtype)

    def matches(self, shape: Sequence[int]) -> bool:
        """True when ``shape`` fits this spec (a -1 axis accepts any size)."""
        return len(shape) == len(self.shape) and all(
            s == -1 or s == int(g) for s, g in zip(self.shape, shape, strict=True)
        )

    def check(self, array: np.ndarray, graph: str) -> None:
        """Raise ``ValueError`` unless ``array`` has this spec's dtype and shape."""
        if array.dtype != np.dtype(self.dtype) or not self.matches(array.shape):
            raise ValueError(
                f"{graph}: input {self.name!r} expected {self.dtype} {list(self.shape)}, "
                f"got {array.dtype} {list(array.shape)}"
            )


@dataclass(frozen=True, slots=True)
class GraphSpec:
    """One inference graph: its files (kind -> file name in the model dir) and its tensors."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: Mapping[str, str] = field(default_factory=dict)
    file_sizes: Mapping[str, int] = field(default_factory=dict)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": dict(self.files),
            "file_sizes": dict(self.file_sizes),
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> GraphSpec:
        where = f"graph {name!r}"
        if not isinstance(data, Mapping):
            raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
        try:
            inputs = tuple(TensorSpec.from_json(t, where) for t in data["inputs"])
            outputs = tuple(TensorSpec.from_json(t, where) for t in data["outputs"])
            files = {str(k): str(v) for k, v in dict(data.get("files", {})).items()}
            sizes = {str(k): int(v) for k, v in dict(data.get("file_sizes", {})).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                f"{where}: expected keys inputs, outputs, files; got {sorted(data)} ({exc})"
            ) from None
        return cls(name, inputs, outputs, files, sizes)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed ``manifest.json``; ``root`` is the model directory (None for in-memory ones)."""

    graphs: Mapping[str, GraphSpec]
    info: Mapping[str, Any] = field(default_factory=dict)
    root: Path | None = None

    def graph(self, name: str) -> GraphSpec:
        try:
            return self.graphs[name]
        except KeyError:
            raise ManifestError(
                f"{self.root or 'model'}: no graph {name!r}; "
                f"expected one of {', '.join(sorted(self.graphs))}"
            ) from None

    def path(self, graph: str, kind: str) -> Path | None:
        """The file of ``kind`` ("json", "pdiparams", "onnx") of ``graph``, or None if absent."""
        spec = self.graph(graph)
        if self.root is None or kind not in spec.files:
            return None
        return self.root / spec.files[kind]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        out.update({k: v for k, v in self.info.items() if k not in ("format", "format_version")})
        out["graphs"] = {name: g.to_json() for name, g in self.graphs.items()}
        return out


def read_manifest(model_dir: str | os.PathLike[str], *, check_files: bool = True) -> Manifest:
    """Parse ``model_dir/manifest.json`` and (by default) check that every listed file exists
    with its recorded size. Raises :class:`ManifestError` with what was expected and found."""
    root = Path(model_dir)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise ManifestError(f"{root}: not a model directory; expected a folder made by "
                            "`mimicam export` holding manifest.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{root}: no {MANIFEST_NAME}; expected a folder made by "
                            "`mimicam export`") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ManifestError(f"{path}: expected format {FORMAT!r}, got {got!r}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ManifestError(
            f"{path}: manifest format_version {version!r} is not supported by this mimicam; "
            f"expected {FORMAT_VERSION} (re-run `mimicam export`)"
        )
    graphs_data = data.get("graphs")
    if not isinstance(graphs_data, dict) or not graphs_data:
        raise ManifestError(f"{path}: expected a non-empty 'graphs' object")
    graphs = {name: GraphSpec.from_json(name, g) for name, g in graphs_data.items()}
    info = {k: v for k, v in data.items() if k != "graphs"}
    manifest = Manifest(graphs, info, root)
    if check_files:
        for spec in graphs.values():
            for kind, fname in spec.files.items():
                fpath = root / fname
                if not fpath.is_file():
                    raise ManifestError(
                        f"{fpath}: missing; the manifest lists it as the {kind} file of "
                        f"graph {spec.name!r}"
                    )
                want = spec.file_sizes.get(kind)
                size = fpath.stat().st_size
                if want is not None and size != want:
                    raise ManifestError(
                        f"{fpath}: size does not match the manifest; expected {want} bytes, "
                        f"got {size} (file replaced or truncated?)"
                    )
    return manifest


def write_manifest(manifest: Manifest, model_dir: str | os.PathLike[str]) -> Path:
    """Write ``manifest.json`` into ``model_dir`` atomically (temporary name, then rename)."""
    root = Path(model_dir)
    path = root / MANIFEST_NAME
    tmp = root / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest.to_json(), indent=1, sort_keys=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    return path
