"""FOMM inference on an exported model directory: three runtimes behind three calls.

::

    fomm = FommRuntime("models/vox256", backend="auto")
    state = fomm.encode_source(portrait)          # once per portrait (heavy)
    kp0 = fomm.detect(first_driving_frame)        # neutral pose
    kp = normalize_kp(state.kp, fomm.detect(frame), kp0, relative=True, adapt_scale=True)
    frame = fomm.animate(state, kp)               # RGB uint8 (size, size, 3)

Keypoint normalisation is the caller's (:mod:`calibrate.keypoints`), so relative/absolute
motion and adapt scale stay run-time choices. Images are RGB uint8 HxWx3 (resized to the
model's size if needed) or float32 [1, 3, S, S] in [0, 1].
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibrate.keypoints import Keypoints
from model_export.manifest import Manifest
from model_export.runtime import Runtime, create_runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceState:
    """Everything the animator needs from one portrait, computed once."""

    features: np.ndarray      # [1, C, h, w] encoded by the generator's first/down blocks
    small: np.ndarray         # [1, 3, h', w'] anti-aliased downscaled portrait
    kp: Keypoints             # the portrait's keypoints, value (K, 2), jacobian (K, 2, 2)
    image_size: int


def to_input(image: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 HxWx3 (any size) or float32 [1, 3, size, size] -> float32 [1, 3, size, size]."""
    arr = np.asarray(image)
    if arr.dtype == np.float32 and arr.shape == (1, 3, size, size):
        return np.ascontiguousarray(arr)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image or float32 (1, 3, {size}, "
                         f"{size}) array, got {arr.dtype} {arr.shape}")
    if arr.shape[:2] != (size, size):
        import cv2

        shrink = arr.shape[0] > size or arr.shape[1] > size
        arr = cv2.resize(arr, (size, size),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out = arr.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
    return np.ascontiguousarray(out)


def to_image(prediction: np.ndarray) -> np.ndarray:
    """float [1, 3, S, S] in [0, 1] -> RGB uint8 (S, S, 3)."""
    chw = np.clip(prediction[0], 0.0, 1.0).transpose(1, 2, 0)
    return np.ascontiguousarray(np.rint(chw * 255.0).astype(np.uint8))


def _batched(a: np.ndarray, tail: int) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float32)
    return arr[None] if arr.ndim == tail else arr


class FommRuntime:
    """The three FOMM graphs of a model directory, each on a :class:`Runtime`.

    Not thread-safe (one instance per thread). ``backend``/``threads``/``precision``/
    ``device_id`` go to :func:`~model_export.runtime.create_runtime` for every graph.
    """

    def __init__(self, model: str | os.PathLike[str] | Manifest, *, backend: str = "auto",
                 threads: int | None = None, precision: str = "fp32", device_id: int = 0,
                 layers: dict[str, Any] | None = None,
                 weights_sha256: str | None = None) -> None:
        from model_export.export import GRAPHS, load_manifest

        manifest = (model if isinstance(model, Manifest)
                    else load_manifest(model, weights_sha256=weights_sha256))
        self.manifest = manifest
        self.image_size = int(manifest.info["image_size"])
        self.num_kp = int(manifest.info["num_kp"])
        self._runtimes: dict[str, Runtime] = {}
        try:
            for name in GRAPHS:
                self._runtimes[name] = create_runtime(
                    manifest, name, backend=backend, threads=threads, precision=precision,
                    device_id=device_id, layers=layers)
        except BaseException:
            self.close()
            raise
        self._with_jacobian = "kp_driving_jacobian" in self._runtimes["animator"].input_names
        self.backends = {name: rt.backend for name, rt in self._runtimes.items()}

    @classmethod
    def reference(cls, weights: Any = None, *, config: Any = None, image_size: int = 256,
                  seed: int = 0, inference: bool = True) -> FommRuntime:
        """The dygraph reference: the networks built in memory (no export, no files)."""
        from model_export.export import build_fomm_layers, memory_manifest, split_layers
        from model_export.fomm import FommConfig

        config = config or FommConfig.vox256()
        kp, gen, info = build_fomm_layers(weights, config=config, seed=seed, inference=inference)
        manifest = memory_manifest(config, image_size, info, inference)
        return cls(manifest, backend="dygraph", layers=split_layers(kp, gen, config))

    @property
    def backend(self) -> str:
        """The backend of the per-frame animator (the one that matters for speed)."""
        return self.backends["animator"]

    def detect(self, image: np.ndarray) -> Keypoints:
        """Keypoints of one image: value (K, 2), jacobian (K, 2, 2) (or None)."""
        out = self._runtimes["kp_detector"].run({"image": to_input(image, self.image_size)})
        jac = out.get("jacobian")
        return Keypoints(value=out["value"][0], jacobian=None if jac is None else jac[0])

    def encode_source(self, image: np.ndarray, *, kp: Keypoints | None = None) -> SourceState:
        """Run the portrait through the source encoder and (unless ``kp`` is given) the
        keypoint detector: the per-portrait work, done once."""
        x = to_input(image, self.image_size)
        enc = self._runtimes["source_encoder"].run({"source_image": x})
        if kp is None:
            kp = self.detect(x)
        return SourceState(features=enc["source_features"], small=enc["source_small"], kp=kp,
                           image_size=self.image_size)

    def animate_array(self, state: SourceState, kp_driving: Keypoints) -> np.ndarray:
        """The animated frame as float32 [1, 3, S, S] in [0, 1] for normalised keypoints."""
        if state.image_size != self.image_size:
            raise ValueError(f"source state is for {state.image_size} px, this model is "
                             f"{self.image_size} px")
        feed = {"source_features": state.features, "source_small": state.small,
                "kp_source_value": _batched(state.kp.value, 2),
                "kp_driving_value": _batched(kp_driving.value, 2)}
        if self._with_jacobian:
            if state.kp.jacobian is None or kp_driving.jacobian is None:
                raise ValueError("this model needs keypoint jacobians, got None")
            feed["kp_source_jacobian"] = _batched(state.kp.jacobian, 3)
            feed["kp_driving_jacobian"] = _batched(kp_driving.jacobian, 3)
        return self._runtimes["animator"].run(feed)["prediction"]

    def animate(self, state: SourceState, kp_driving: Keypoints) -> np.ndarray:
        """The animated frame, RGB uint8 (S, S, 3)."""
        return to_image(self.animate_array(state, kp_driving))

    def close(self) -> None:
        for rt in self._runtimes.values():
            rt.close()
        self._runtimes.clear()

    def __enter__(self) -> FommRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
