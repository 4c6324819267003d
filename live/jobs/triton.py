"""Triton Inference Server as a child process, serving a model repository of Python-backend models.

``mimicam serve`` writes a model repository (:func:`write_repository`) whose models are
:mod:`live.jobs.triton_models` run by Triton's own Python backend, and starts the
``tritonserver`` binary that the ``nvidia-pytriton`` wheel ships (:class:`TritonProcess`).
Each model instance is a Python process of its own (Triton's backend stub): the engine runs
right there, with no further hop to this process, and two instances compute side by side on
two cores without sharing an interpreter lock. The same repository runs in NVIDIA's Triton
containers (``tritonserver --model-repository DIR``), given this package in their Python.

Only this module knows where the binaries lie and how Triton is started.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from calibrate.errors import MimicamError

log = logging.getLogger(__name__)

SPEC_PARAMETER = "mimicam_spec"
"""The model parameter naming the pickled serve spec each model instance loads."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    """Triton's type name: UINT8, INT32, FP32, FP64, STRING."""
    dims: tuple[int, ...]
    optional: bool = False

    def pbtxt(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        opt = " optional: true" if self.optional else ""
        return f'{{ name: "{self.name}" data_type: TYPE_{self.dtype} dims: [ {dims} ]{opt} }}'


@dataclass(frozen=True)
class ModelSpec:
    """One model of the repository. ``sequence``: a stateful model whose requests carry a
    sequence id; Triton sends all requests of one sequence to the same instance (the
    "oldest" strategy also batches requests of different sequences)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int
    instances: int = 1
    queue_delay_us: int | None = None
    """Dynamic batching with this delay; None: no batcher."""
    sequence: bool = False
    sequence_idle_us: int = 60_000_000
    max_sequences: int = 64

    def config(self, spec_path: Path) -> str:
        lines = [f'name: "{self.name}"', 'backend: "python"',
                 f"max_batch_size: {self.max_batch}"]
        lines.append("input [\n  " + ",\n  ".join(t.pbtxt() for t in self.inputs) + "\n]")
        lines.append("output [\n  " + ",\n  ".join(t.pbtxt() for t in self.outputs) + "\n]")
        if self.sequence:
            delay = self.queue_delay_us or 0
            lines.append("sequence_batching {\n"
                         f"  max_sequence_idle_microseconds: {self.sequence_idle_us}\n"
                         f"  oldest {{ max_candidate_sequences: {self.max_sequences} "
                         f"max_queue_delay_microseconds: {delay} }}\n}}")
        elif self.queue_delay_us is not None:
            lines.append("dynamic_batching { max_queue_delay_microseconds: "
                         f"{self.queue_delay_us} }}")
        lines.append(f"instance_group [ {{ count: {max(1, self.instances)} kind: KIND_CPU }} ]")
        lines.append(f'parameters {{ key: "{SPEC_PARAMETER}" value: {{ string_value: '
                     f'"{spec_path.as_posix()}" }} }}')
        return "\n".join(lines) + "\n"


_MODEL_PY = '''\
"""A mimicam serve model, written by mimicam serve: the code is live.jobs.triton_models."""
from live.jobs.triton_models import TritonPythonModel  # noqa: F401
'''


def write_repository(root: Path, models: Iterable[ModelSpec], spec_path: Path) -> Path:
    """The model repository under ``root``: each model's ``config.pbtxt`` and ``1/model.py``."""
    root.mkdir(parents=True, exist_ok=True)
    for model in models:
        version = root / model.name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (root / model.name / "config.pbtxt").write_text(model.config(spec_path))
        (version / "model.py").write_text(_MODEL_PY)
    return root


# -- the binaries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TritonDist:
    server: Path
    libs: Path
    backend: Path
    """Triton's Python backend directory (libtriton_python.so and its utilities)."""
    stub: Path
    """The backend stub built for this interpreter's Python version."""


def find_dist() -> TritonDist:
    """Triton's binaries from the ``nvidia-pytriton`` wheel (``pip install 'mimicam[serve]'``)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MimicamError("mimicam serve needs Triton from the nvidia-pytriton wheel: "
                           "pip install 'mimicam[serve]'")
    package = Path(next(iter(spec.submodule_search_locations)))
    dist = package / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = TritonDist(server=dist / "bin" / "tritonserver",
                       libs=package.parent / "nvidia_pytriton.libs",
                       backend=dist / "backends" / "python",
                       stub=dist / "python_backend_stubs" / version /
                       "triton_python_backend_stub")
    if not found.libs.is_dir():  # an editable install of PyTriton keeps them here
        found = TritonDist(found.server, dist / "external_libs", found.backend, found.stub)
    missing = [p for p in (found.server, found.backend / "libtriton_python.so", found.stub)
               if not p.exists()]
    if missing:
        raise MimicamError(f"Triton's files are missing from {package} (Python {version}): "
                           + ", ".join(p.name for p in missing))
    return found


def backends_dir(work: Path, dist: TritonDist) -> Path:
    """A backend directory whose Python backend runs this interpreter's stub (links, no copies)."""
    python = work / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    for target in [*dist.backend.iterdir(), dist.stub]:
        if target.name == "__pycache__":
            continue
        link = python / target.name
        if not link.exists():
            link.symlink_to(target)
    return work / "backends"


# -- the process -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    exit_timeout_s: int = 10


class TritonProcess:
    """``tritonserver`` on ``repository``, started by :meth:`start`, stopped by :meth:`stop`
    (idempotent; SIGTERM, then SIGKILL after the exit timeout). Its output goes to this
    module's logger (errors as warnings); :attr:`tail` keeps the last lines."""

    def __init__(self, repository: Path, work: Path, endpoints: Endpoints, *,
                 backend_config: dict[str, str] | None = None) -> None:
        self._repository = repository
        self._work = work
        self._endpoints = endpoints
        self._backend_config = backend_config or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.tail: deque[str] = deque(maxlen=40)

    def command(self, dist: TritonDist) -> list[str]:
        e = self._endpoints
        cmd = [str(dist.server), f"--model-repository={self._repository}",
               f"--backend-directory={backends_dir(self._work, dist)}",
               f"--http-address={e.host}", f"--http-port={e.http_port}",
               f"--grpc-address={e.host}", f"--grpc-port={e.grpc_port}",
               f"--metrics-address={e.host}", f"--metrics-port={e.metrics_port}",
               f"--exit-timeout-secs={e.exit_timeout_s}", "--log-verbose=0"]
        cmd += [f"--backend-config=python,{k}={v}" for k, v in self._backend_config.items()]
        if e.tls_cert is not None and e.tls_key is not None:
            cmd += ["--grpc-use-ssl=true", f"--grpc-server-cert={e.tls_cert}",
                    f"--grpc-server-key={e.tls_key}"]
        return cmd

    def environment(self, dist: TritonDist) -> dict[str, str]:
        """This process's environment, plus: the stub finds this interpreter's libpython (a
        pyenv build, not an older system one of the same version) and Triton's own libraries,
        its Python runs this interpreter's packages, and ``live`` imports from this checkout."""
        env = dict(os.environ)
        libs = [str(dist.libs)]
        libdir = sysconfig.get_config_var("LIBDIR")
        if libdir and Path(libdir).is_dir():
            libs.insert(0, libdir)
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(libs)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = f"{root}:{env['PYTHONPATH']}" if env.get("PYTHONPATH") else root
        return env

    def start(self) -> None:
        dist = find_dist()
        cmd = self.command(dist)
        log.debug("starting %s", " ".join(cmd))
        self._proc = subprocess.Popen(
            cmd, env=self.environment(dist), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # its own session: a terminal's Ctrl-C reaches only mimicam, which stops Triton
            # in order (the stubs unload their models); it dies with mimicam all the same
            start_new_session=True, preexec_fn=_die_with_parent)
        self._reader = threading.Thread(target=self._read, name="triton-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self.tail.append(line)
            if line.startswith(_FORWARDED):  # a model's own log line: "LEVEL name: message"
                level, _, rest = line[len(_FORWARDED):].partition(" ")
                log.log(logging.getLevelName(level) if level.isupper() else logging.INFO,
                        "%s", rest)
            elif any(n in line for n in _NO_GPU):
                log.debug("triton: %s", line)
            elif line.startswith("E") or "Traceback" in line or "Error" in line:
                log.warning("triton: %s", line)
            else:
                log.debug("triton: %s", line)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def poll(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def wait_ready(self, models: Iterable[str], timeout_s: float = 180.0) -> None:
        """Until Triton and every model answer ready on HTTP; MimicamError (with Triton's last
        lines) when it exits first or the time runs out."""
        e = self._endpoints
        host = "127.0.0.1" if e.host in ("0.0.0.0", "::") else e.host
        host = f"[{host}]" if ":" in host else host
        urls = [f"http://{host}:{e.http_port}/v2/models/{m}/ready" for m in models]
        deadline = time.monotonic() + timeout_s
        while True:
            if self.poll() is not None:
                raise MimicamError(f"Triton exited while starting (code {self.poll()}): "
                                   + self._last_lines())
            if all(_ready(u) for u in urls):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise MimicamError(f"Triton was not ready after {timeout_s:.0f} s: "
                                   + self._last_lines())
            time.sleep(0.2)

    def _last_lines(self) -> str:
        lines = [ln for ln in self.tail if ln.startswith("E") or "rror" in ln] or list(self.tail)
        return " | ".join(lines[-4:]) or "no output"

    def wait(self) -> int:
        assert self._proc is not None
        return self._proc.wait()

    def stop(self) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self._endpoints.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                log.warning("Triton did not stop in time; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return proc.returncode


_FORWARDED = "mimicam serve: "
"""How :mod:`live.jobs.triton_models` starts the log lines of the models' processes."""
_NO_GPU = ("CudaDriverHelper", "NVML", "DCGM")
"""Triton's errors about a machine without a GPU: expected on a CPU."""


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when mimicam dies (Linux; elsewhere nothing)."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the child outlives a crash; a clean stop still stops it
        pass
