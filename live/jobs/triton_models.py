"""The ``mimicam serve`` models, as run by Triton's Python backend (each instance a process).

Triton imports ``TritonPythonModel`` from the ``model.py`` that
:func:`live.jobs.triton.write_repository` writes, calls ``initialize`` once per instance,
``execute`` with each batch of requests and ``finalize`` on unloading. The model's name says
what it is (``info``, ``portrait`` or ``animate``); its ``mimicam_spec`` parameter names the
pickled :class:`~live.jobs.serve.ServeSpec` (engine, options, the portrait spool) it builds its
part of the :class:`~live.jobs.serve.AnimationService` from. Portraits go through the spool
directory: the ``portrait`` model writes each prepared portrait there, the ``animate``
instances (other processes) read it on first use.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class TritonRequest:
    """A Python-backend request as :class:`~live.jobs.serve.AnimationService` reads one: inputs by
    name (batched arrays), ``parameters`` (a dict) and ``requested_output_names``."""

    def __init__(self, request: Any) -> None:
        self._inputs = {t.name(): t for t in request.inputs()}
        text = request.parameters()
        try:
            params = json.loads(text) if text else {}
        except ValueError:
            params = {}
        self.parameters: dict[str, Any] = params if isinstance(params, dict) else {}
        self.requested_output_names: tuple[str, ...] = tuple(request.requested_output_names())

    def keys(self) -> Any:
        return self._inputs.keys()

    def get(self, name: str, default: np.ndarray | None = None) -> np.ndarray | None:
        """An optional input (``default`` when the request has none)."""
        return self[name] if name in self._inputs else default

    def __getitem__(self, name: str) -> np.ndarray:
        value: np.ndarray = self._inputs[name].as_numpy()
        return value


class TritonPythonModel:
    """One model instance (see the module docstring)."""

    def initialize(self, args: dict[str, str]) -> None:
        from live.jobs.serve import load_spec, model_handler

        config = json.loads(args["model_config"])
        spec_path = config["parameters"]["mimicam_spec"]["string_value"]
        spec = load_spec(spec_path)
        _log_to_stderr(spec.log_level)
        keep_heap_memory()
        self._name = config["name"]
        self._handler = model_handler(self._name, spec)
        log.debug("%s instance %s ready", self._name, args.get("model_instance_name"))

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb  # the stub's own module

        answers = self._handler([TritonRequest(r) for r in requests])
        return [pb.InferenceResponse(output_tensors=[pb.Tensor(name, value)
                                                     for name, value in answer.items()])
                for answer in answers]

    def finalize(self) -> None:
        close = getattr(self._handler, "close", None)
        if close is not None:
            close()


def _log_to_stderr(level: int) -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("mimicam serve: %(levelname)s %(name)s: "
                                               "%(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # glibc's largest
TRIM_THRESHOLD = 256 << 20


def keep_heap_memory() -> bool:
    """glibc's malloc in this process keeps large blocks (frames) on its heap and does not
    give freed memory back to the system at once. In Triton's backend stub it mapped each
    large array anew and gave it back when freed: every frame touched fresh pages (1,560
    page faults a frame against 32 in a plain Python process, the mesh engine ~15 % slower).
    A plain Python process gets the same from glibc's own adaptive thresholds. Returns
    whether it was set (False where there is no glibc)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
