"""``mimicam doctor``: the set-up users get stuck on, checked one thing at a time.

Each check is a small function returning a :class:`Check` (``ok`` or ``fix`` with the fix in
one line, ``warn`` for something that works but could be better). Everything a check looks
at comes from :class:`Probes`, so tests replace any part with a fake (a machine without a
webcam, a v4l2loopback without ``exclusive_caps``, a port in use, ...).

:func:`run_doctor` runs them all; the :class:`Report` is *ready* for ``mimicam live`` when a
webcam, an animation engine and an output (virtual camera, preview window or the HTTP page)
are all available.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from live.io.cameras import CameraScan, no_camera_fix, scan_cameras

Status = Literal["ok", "warn", "fix"]

__all__ = ["Check", "Probes", "Report", "run_doctor"]

V4L2LOOPBACK_LOAD = ('sudo modprobe v4l2loopback devices=1 exclusive_caps=1 '
                     'card_label="mimicam"')
V4L2LOOPBACK_RELOAD = f"sudo modprobe -r v4l2loopback && {V4L2LOOPBACK_LOAD}"
VIDEO_GROUP = "sudo usermod -aG video $USER, then log out and in again"
DEFAULT_HTTP = ("127.0.0.1", 8080)


@dataclass(frozen=True)
class Check:
    """One line of the report: ``status`` ok / warn / fix, what was found (``summary``),
    the fix (one line, unless ok) and machine-readable ``details``."""

    key: str
    title: str
    status: Status
    summary: str
    fix: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Usable (``warn`` too: it works, with a suggestion)."""
        return self.status != "fix"

    def line(self, width: int = 15) -> str:
        mark = {"ok": "OK  ", "warn": "WARN", "fix": "FIX "}[self.status]
        text = f"{mark} {self.title:<{width}} {self.summary}"
        return f"{text}. Fix: {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "status": self.status,
                "summary": self.summary, "fix": self.fix, "details": dict(self.details)}


@dataclass(frozen=True)
class Report:
    """All checks, and whether ``mimicam live`` has what it needs."""

    checks: tuple[Check, ...]
    system: str = ""

    def get(self, key: str) -> Check | None:
        return next((c for c in self.checks if c.key == key), None)

    def _ok(self, *keys: str) -> bool:
        return any((c := self.get(k)) is not None and c.ok for k in keys)

    @property
    def missing(self) -> list[str]:
        """What ``mimicam live`` lacks here (empty: ready)."""
        out = []
        if not self._ok("webcam"):
            out.append("a webcam (or drive with a video: mimicam live --driver VIDEO)")
        if not self._ok("engines"):
            out.append("an animation engine")
        if not self._ok("vcam", "display", "http"):
            out.append("an output (virtual camera, preview window or the HTTP page)")
        return out

    @property
    def ready(self) -> bool:
        return not self.missing

    def text(self) -> str:
        lines = [f"mimicam doctor: what 'mimicam live' needs on this machine ({self.system})"]
        lines += [c.line() for c in self.checks]
        if self.ready:
            lines.append("ready: mimicam live has a webcam, an engine and an output")
        else:
            lines.append("not ready for mimicam live: missing " + "; ".join(self.missing))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "missing": self.missing, "system": self.system,
                "checks": [c.as_dict() for c in self.checks]}


# ----------------------------------------------------------------------------------------------
# probes: what the checks look at (tests replace them)


def _module_installed() -> bool:
    """Whether a v4l2loopback kernel module exists for the running kernel."""
    if shutil.which("modinfo"):
        done = subprocess.run(["modinfo", "-n", "v4l2loopback"], capture_output=True,
                              text=True, timeout=10, check=False)
        return done.returncode == 0
    root = Path("/lib/modules") / os.uname().release
    return root.is_dir() and any(root.rglob("v4l2loopback.ko*"))


def _import_pyvirtualcam() -> Any:
    import pyvirtualcam

    return pyvirtualcam


def _open_obs() -> str:
    """Open and close OBS's virtual camera through pyvirtualcam; its device name."""
    import pyvirtualcam

    with pyvirtualcam.Camera(width=320, height=240, fps=30, backend="obs") as cam:
        return str(cam.device)


def _platform() -> Any:
    from model_export.runtime import detect_platform

    return detect_platform()


def _onnx_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def _find_weights(size: int) -> Path | None:
    from model_export.weights import find_weights

    return find_weights(size)


def _inspect_weights(path: Path) -> tuple[bool, str, str]:
    """(layout ok, summary of mismatches, sha256) of a checkpoint."""
    from model_export.weights import inspect_weights

    info = inspect_weights(path)
    return info.report.ok, ("" if info.report.ok else info.report.summary()), info.sha256


def _load_mediapipe() -> str:
    """Build MediaPipe's face detectors and face mesh from the wheel's bundled models and run
    them once on a blank picture."""
    import mediapipe
    import numpy as np
    from mediapipe.python.solutions import face_detection, face_mesh

    blank = np.zeros((128, 128, 3), np.uint8)
    for model in (0, 1):
        with face_detection.FaceDetection(model_selection=model) as det:
            det.process(blank)
    with face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        mesh.process(blank)
    return str(mediapipe.__version__)


def _port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served on, or None when it is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _preview() -> tuple[bool, str]:
    from live.io.sinks import preview_works

    return preview_works()


@dataclass
class Probes:
    """Everything the checks look at; each field can be replaced (tests)."""

    system: str = field(default_factory=platform.system)
    scan_cameras: Callable[[], CameraScan] = scan_cameras
    sys_module: Path = Path("/sys/module")
    access: Callable[[str, int], bool] = os.access
    module_installed: Callable[[], bool] = _module_installed
    import_pyvirtualcam: Callable[[], Any] = _import_pyvirtualcam
    open_obs: Callable[[], str] = _open_obs
    platform: Callable[[], Any] = _platform
    onnx_providers: Callable[[], list[str]] = _onnx_providers
    find_weights: Callable[[int], Path | None] = _find_weights
    inspect_weights: Callable[[Path], tuple[bool, str, str]] = _inspect_weights
    load_mediapipe: Callable[[], str] = _load_mediapipe
    port_problem: Callable[[str, int], str | None] = _port_problem
    preview: Callable[[], tuple[bool, str]] = _preview
    http: tuple[str, int] = DEFAULT_HTTP


def _failed(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------
# the checks


def check_webcam(probes: Probes) -> Check:
    try:
        scan = probes.scan_cameras()
    except Exception as exc:
        return Check("webcam", "webcam", "fix", f"cannot list the cameras ({_failed(exc)})",
                     no_camera_fix(probes.system))
    details = scan.as_dict()
    usable = [c for c in scan.cameras if not c.problem]
    if usable:
        return Check("webcam", "webcam", "ok", "; ".join(c.describe() for c in usable),
                     details=details)
    if scan.cameras:  # there, but this user may not open them
        return Check("webcam", "webcam", "fix", "; ".join(c.describe() for c in scan.cameras),
                     VIDEO_GROUP, details)
    where = " (no video capture device in /dev)" if probes.system == "Linux" else ""
    return Check("webcam", "webcam", "fix", f"no webcam found{where}",
                 no_camera_fix(probes.system), details)


def _exclusive_caps(probes: Probes) -> list[bool] | None:
    path = probes.sys_module / "v4l2loopback" / "parameters" / "exclusive_caps"
    try:
        raw = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return [v.strip().upper() in ("Y", "1") for v in raw.split(",") if v.strip()]


def check_vcam(probes: Probes) -> Check:
    key, title = "vcam", "virtual camera"
    system = probes.system
    try:
        probes.import_pyvirtualcam()
    except Exception as exc:
        return Check(key, title, "fix", f"pyvirtualcam is not installed ({_failed(exc)})",
                     "pip install 'mimicam[vcam]'")
    if system in ("Windows", "Darwin"):
        try:
            device = probes.open_obs()
        except Exception as exc:
            return Check(key, title, "fix", f"no OBS Virtual Camera ({_failed(exc)})",
                         "install OBS Studio 28 or newer and start its Virtual Camera once "
                         "(Controls > Start Virtual Camera), then stop it and close OBS")
        return Check(key, title, "ok", f"OBS Virtual Camera ({device})",
                     details={"device": device})
    if system != "Linux":
        return Check(key, title, "fix", f"no virtual camera backend is known for {system}",
                     "use the HTTP page (--http PORT) or the preview window instead")
    if not (probes.sys_module / "v4l2loopback").is_dir():
        try:
            installed = probes.module_installed()
        except Exception:
            installed = False
        if installed:
            return Check(key, title, "fix", "v4l2loopback is installed but not loaded",
                         V4L2LOOPBACK_LOAD)
        return Check(key, title, "fix", "v4l2loopback is not loaded (nor installed for this "
                     "kernel)", f"sudo apt install v4l2loopback-dkms (Debian/Ubuntu; Fedora: "
                     f"akmod-v4l2loopback), then {V4L2LOOPBACK_LOAD}")
    try:
        devices = sorted(probes.scan_cameras().virtual, key=lambda c: c.index)
    except Exception:
        devices = []
    if not devices:
        return Check(key, title, "fix", "v4l2loopback is loaded but has no device",
                     V4L2LOOPBACK_RELOAD)
    caps = _exclusive_caps(probes)
    found = []
    writable_exclusive = writable = 0
    for i, dev in enumerate(devices):
        can_write = dev.device is not None and probes.access(dev.device, os.W_OK)
        exclusive = None if caps is None or i >= len(caps) else caps[i]
        writable += can_write
        writable_exclusive += bool(can_write and exclusive is not False)
        found.append({"device": dev.device, "name": dev.name, "writable": bool(can_write),
                      "exclusive_caps": exclusive})
    described = ", ".join(
        f"{d['device']} ({d['name'] or 'no name'}; "
        f"exclusive_caps={'?' if d['exclusive_caps'] is None else int(d['exclusive_caps'])}; "
        f"{'writable' if d['writable'] else 'not writable'})" for d in found)
    details = {"devices": found}
    if writable_exclusive:
        return Check(key, title, "ok", f"v4l2loopback: {described}", details=details)
    if writable:
        return Check(key, title, "warn", f"v4l2loopback: {described}; without exclusive_caps=1 "
                     "Chrome, Zoom, Teams and Meet do not list it", V4L2LOOPBACK_RELOAD,
                     details)
    return Check(key, title, "fix", f"v4l2loopback: {described}; this user cannot write to it",
                 VIDEO_GROUP, details)


def check_runtimes(probes: Probes) -> Check:
    key, title = "runtimes", "runtimes"
    try:
        plat = probes.platform()
    except Exception as exc:
        return Check(key, title, "fix", f"cannot probe the runtimes ({_failed(exc)})",
                     "pip install -c constraints.txt -e .")
    parts = []
    details: dict[str, Any] = {
        "paddle": plat.paddle_version, "cuda_build": bool(plat.cuda_compiled),
        "gpus": int(plat.gpu_count),
        "tensorrt": ".".join(map(str, plat.trt_version)) if any(plat.trt_version) else None,
        "onnxruntime": plat.onnxruntime_version}
    if plat.paddle_version:
        build = "CUDA build" if plat.cuda_compiled else "CPU build"
        trt = details["tensorrt"] or "none"
        parts.append(f"Paddle {plat.paddle_version} {build}, {plat.gpu_count} GPU(s), "
                     f"TensorRT {trt}")
    else:
        parts.append(f"no Paddle ({plat.paddle_error})")
    providers: list[str] = []
    if plat.onnxruntime_version:
        try:
            providers = probes.onnx_providers()
        except Exception as exc:
            providers = [f"? ({_failed(exc)})"]
        parts.append(f"onnxruntime {plat.onnxruntime_version} ({', '.join(providers)})")
    else:
        parts.append("no onnxruntime")
    details["onnx_providers"] = providers
    backends = []
    if plat.cuda_compiled and plat.gpu_count > 0:
        backends += (["paddle-trt"] if any(plat.trt_version) else []) + ["paddle-gpu"]
    if plat.onnxruntime_version:
        backends.append("onnxruntime")
    if plat.paddle_version:
        backends.append("paddle-cpu")
    details["backends"] = backends
    summary = "; ".join(parts)
    if not backends:
        return Check(key, title, "fix", summary, "pip install -c constraints.txt "
                     "paddlepaddle==3.2.2 (or pip install 'mimicam[onnx]')", details)
    if plat.cuda_compiled and plat.gpu_count == 0:
        return Check(key, title, "warn", summary + "; a CUDA build without a visible GPU",
                     "install the NVIDIA driver, or check CUDA_VISIBLE_DEVICES", details)
    return Check(key, title, "ok", summary, details=details)


def check_weights(probes: Probes) -> Check:
    key, title = "weights", "FOMM weights"
    found = []
    for size in (256, 512):
        try:
            path = probes.find_weights(size)
        except Exception:
            path = None
        if path is not None:
            found.append((size, path))
    if not found:
        return Check(key, title, "fix", "none in the cache (only --engine fomm needs them; "
                     "mesh runs without)", "mimicam weights fetch",
                     details={"found": []})
    lines: list[str] = []
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    for size, path in found:
        try:
            ok, why, sha = probes.inspect_weights(path)
        except Exception as exc:
            ok, why, sha = False, _failed(exc), ""
        rows.append({"size": size, "path": str(path), "layout_ok": ok, "sha256": sha,
                     "problem": why})
        mb = path.stat().st_size / 1e6 if path.exists() else 0.0
        if ok:
            lines.append(f"{path} ({mb:.0f} MB, sha256 {sha[:12]}..., layout OK)")
        else:
            problems.append(f"{path}: {why or 'unreadable'}")
    details = {"found": rows}
    if problems:
        bad = {r["size"] for r in rows if not r["layout_ok"]}
        fetch = " and ".join(f"mimicam weights fetch --size {s}" for s in sorted(bad))
        return Check(key, title, "fix", "; ".join(lines + problems),
                     f"delete the damaged file and run {fetch}", details)
    return Check(key, title, "ok", "; ".join(lines), details=details)


def check_mediapipe(probes: Probes) -> Check:
    key, title = "mediapipe", "MediaPipe"
    try:
        version = probes.load_mediapipe()
    except Exception as exc:
        return Check(key, title, "fix", f"its bundled face models do not load ({_failed(exc)})",
                     "pip install -c constraints.txt mediapipe==0.10.21 (newer wheels no longer "
                     "bundle the face models)")
    return Check(key, title, "ok", f"{version}: face detection (short and full range) and face "
                 "mesh with irises load", details={"version": version})


def check_engines(probes: Probes, mediapipe: Check, runtimes: Check, weights: Check) -> Check:
    key, title = "engines", "engines"
    mesh = mediapipe.ok
    backends = list(runtimes.details.get("backends", []))
    found = [r["path"] for r in weights.details.get("found", []) if r.get("layout_ok")]
    fomm = bool(backends and found)
    parts = ["mesh: yes" if mesh else "mesh: no (MediaPipe's models do not load)"]
    if fomm:
        parts.append(f"fomm: yes with --weights {found[0]} on {', '.join(backends)}")
    elif not backends:
        parts.append("fomm: no (no runtime)")
    else:
        parts.append(f"fomm: needs weights (runtimes ready: {', '.join(backends)})")
    details = {"mesh": mesh, "fomm": fomm, "fomm_backends": backends}
    if mesh or fomm:
        return Check(key, title, "ok", "; ".join(parts), details=details)
    return Check(key, title, "fix", "; ".join(parts), mediapipe.fix or runtimes.fix, details)


def check_http(probes: Probes) -> Check:
    host, port = probes.http
    problem = probes.port_problem(host, port)
    if problem is None:
        return Check("http", "HTTP port", "ok", f"{host}:{port} is free for --http",
                     details={"host": host, "port": port})
    other = 8090 if port != 8090 else 8091
    return Check("http", "HTTP port", "fix", f"cannot serve on {host}:{port} ({problem})",
                 f"stop what uses it, or pick another port: mimicam live --http {other}",
                 {"host": host, "port": port, "problem": problem})


def check_display(probes: Probes) -> Check:
    try:
        ok, why = probes.preview()
    except Exception as exc:
        ok, why = False, _failed(exc)
    if ok:
        return Check("display", "display", "ok", "the preview window can open")
    return Check("display", "display", "fix", f"no preview window: {why}",
                 "run mimicam live in a desktop session, or use --no-preview and watch the "
                 "page of --http PORT in a browser", {"problem": why})


def run_doctor(probes: Probes | None = None) -> Report:
    """Run every check (see the module docstring)."""
    probes = probes or Probes()
    webcam = check_webcam(probes)
    vcam = check_vcam(probes)
    runtimes = check_runtimes(probes)
    weights = check_weights(probes)
    mediapipe = check_mediapipe(probes)
    engines = check_engines(probes, mediapipe, runtimes, weights)
    checks = (webcam, vcam, engines, runtimes, weights, mediapipe, check_http(probes),
              check_display(probes))
    py = ".".join(map(str, sys.version_info[:3]))
    return Report(checks, system=f"{probes.system}, Python {py}")
