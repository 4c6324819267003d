"""``mimicam doctor``: every check with fakes for each way it fails (and passes), the
readiness rule behind the exit status, and the real run on this machine (no webcam, no
v4l2loopback: it must say exactly that and how to fix it)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from live.cli.main import main
from live.io.cameras import CameraInfo, CameraScan
from live.jobs.doctor import (
    V4L2LOOPBACK_LOAD,
    V4L2LOOPBACK_RELOAD,
    Probes,
    check_display,
    check_http,
    check_runtimes,
    check_vcam,
    check_webcam,
    check_weights,
    run_doctor,
)
from model_export.runtime import Platform

WEBCAM = CameraInfo(0, "HD Webcam", "/dev/video0", ((640, 480), (1280, 720)))
LOOPBACK = CameraInfo(10, "mimicam", "/dev/video10", virtual=True, driver="v4l2 loopback")


def _raise(exc: BaseException) -> Any:
    def fail(*args: Any) -> Any:
        raise exc

    return fail


def healthy(tmp_path: Path, **changes: Any) -> Probes:
    """A Linux machine where everything is set up; ``changes`` break one part."""
    module = tmp_path / "module"
    params = module / "v4l2loopback" / "parameters"
    params.mkdir(parents=True, exist_ok=True)
    (params / "exclusive_caps").write_text("Y,N,N,N,N,N,N,N\n")
    weights = tmp_path / "vox-cpk.pdparams"
    weights.write_bytes(b"x" * 1000)
    probes = Probes(
        system="Linux",
        scan_cameras=lambda: CameraScan((WEBCAM,), (LOOPBACK,), "v4l2"),
        sys_module=module,
        access=lambda path, mode: True,
        module_installed=lambda: True,
        import_pyvirtualcam=lambda: object(),
        open_obs=lambda: "OBS Virtual Camera",
        platform=lambda: Platform(paddle_version="3.2.2", onnxruntime_version="1.20.1"),
        onnx_providers=lambda: ["CPUExecutionProvider"],
        find_weights=lambda size: weights if size == 256 else None,
        inspect_weights=lambda path: (True, "", "ab" * 32),
        load_mediapipe=lambda: "0.10.21",
        port_problem=lambda host, port: None,
        preview=lambda: (True, ""),
    )
    for name, value in changes.items():
        setattr(probes, name, value)
    return probes


def test_everything_set_up_is_ready(tmp_path: Path) -> None:
    report = run_doctor(healthy(tmp_path))
    assert report.ready and report.missing == []
    assert all(c.status == "ok" for c in report.checks), report.text()
    text = report.text()
    assert "OK   webcam          0: HD Webcam (/dev/video0): 640x480, 1280x720" in text
    assert "/dev/video10 (mimicam; exclusive_caps=1; writable)" in text
    assert "mesh: yes; fomm: yes with --weights" in text
    assert text.splitlines()[-1].startswith("ready")
    data = report.as_dict()
    assert data["ready"] and {c["key"] for c in data["checks"]} == {
        "webcam", "vcam", "engines", "runtimes", "weights", "mediapipe", "http", "display"}
    json.dumps(data)  # JSON-ready


def test_no_webcam(tmp_path: Path) -> None:
    probes = healthy(tmp_path, scan_cameras=lambda: CameraScan((), (LOOPBACK,), "v4l2"))
    check = check_webcam(probes)
    assert check.status == "fix" and check.summary.startswith("no webcam found")
    assert "--driver" in check.fix
    report = run_doctor(probes)
    assert not report.ready and report.missing[0].startswith("a webcam")


def test_a_webcam_without_permission(tmp_path: Path) -> None:
    denied = CameraInfo(0, "HD Webcam", "/dev/video0", problem="no permission to open it")
    check = check_webcam(healthy(tmp_path, scan_cameras=lambda: CameraScan((denied,))))
    assert check.status == "fix" and "usermod -aG video" in check.fix


def test_camera_listing_that_fails(tmp_path: Path) -> None:
    check = check_webcam(healthy(tmp_path, scan_cameras=_raise(OSError("boom"))))
    assert check.status == "fix" and "cannot list the cameras (OSError: boom)" in check.summary


@pytest.mark.parametrize("case", ["no pyvirtualcam", "not installed", "not loaded",
                                  "no device", "no exclusive_caps", "not writable"])
def test_virtual_camera_on_linux(tmp_path: Path, case: str) -> None:
    probes = healthy(tmp_path)
    exclusive = tmp_path / "module" / "v4l2loopback" / "parameters" / "exclusive_caps"
    if case == "no pyvirtualcam":
        probes.import_pyvirtualcam = _raise(ImportError("No module named 'pyvirtualcam'"))
    elif case in ("not installed", "not loaded"):
        (tmp_path / "module" / "v4l2loopback").rename(tmp_path / "elsewhere")
        probes.module_installed = lambda: case == "not loaded"
    elif case == "no device":
        probes.scan_cameras = lambda: CameraScan((WEBCAM,), (), "v4l2")
    elif case == "no exclusive_caps":
        exclusive.write_text("N,N\n")
    elif case == "not writable":
        probes.access = lambda path, mode: False
    check = check_vcam(probes)
    want = {"no pyvirtualcam": ("fix", "pip install 'mimicam[vcam]'"),
            "not installed": ("fix", "sudo apt install v4l2loopback-dkms"),
            "not loaded": ("fix", V4L2LOOPBACK_LOAD),
            "no device": ("fix", V4L2LOOPBACK_RELOAD),
            "no exclusive_caps": ("warn", V4L2LOOPBACK_RELOAD),
            "not writable": ("fix", "sudo usermod -aG video $USER")}[case]
    assert check.status == want[0], check.line()
    assert want[1] in check.fix
    assert "\n" not in check.line()  # the fix in one line
    if case == "not installed":
        assert check.summary == "v4l2loopback is not loaded (nor installed for this kernel)"
        assert check.fix.endswith(V4L2LOOPBACK_LOAD)
    if case == "no exclusive_caps":
        assert "Chrome, Zoom, Teams and Meet do not list it" in check.summary
        assert run_doctor(probes).ready  # works (OBS, ffmpeg), with a suggestion


@pytest.mark.parametrize("system", ["Windows", "Darwin"])
def test_virtual_camera_on_windows_and_macos(tmp_path: Path, system: str) -> None:
    probes = healthy(tmp_path, system=system)
    ok = check_vcam(probes)
    assert ok.status == "ok" and "OBS Virtual Camera" in ok.summary
    probes.open_obs = _raise(RuntimeError("'obs' backend: OBS Virtual Camera is not "
                                          "installed in your system"))
    missing = check_vcam(probes)
    assert missing.status == "fix" and "no OBS Virtual Camera" in missing.summary
    assert "install OBS Studio" in missing.fix and "Start Virtual Camera" in missing.fix


def test_runtimes(tmp_path: Path) -> None:
    gpu = Platform(paddle_version="3.2.2", cuda_compiled=True, gpu_count=2,
                   trt_version=(8, 6, 1), onnxruntime_version="1.20.1")
    check = check_runtimes(healthy(
        tmp_path, platform=lambda: gpu,
        onnx_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]))
    assert check.status == "ok"
    assert "Paddle 3.2.2 CUDA build, 2 GPU(s), TensorRT 8.6.1" in check.summary
    assert "onnxruntime 1.20.1 (CUDAExecutionProvider, CPUExecutionProvider)" in check.summary
    assert check.details["backends"] == ["paddle-trt", "paddle-gpu", "onnxruntime",
                                         "paddle-cpu"]
    no_gpu = Platform(paddle_version="3.2.2", cuda_compiled=True, gpu_count=0)
    warn = check_runtimes(healthy(tmp_path, platform=lambda: no_gpu))
    assert warn.status == "warn" and "CUDA_VISIBLE_DEVICES" in warn.fix
    nothing = Platform(paddle_error="paddlepaddle is not importable (x)",
                       onnxruntime_error="onnxruntime is not installed")
    fix = check_runtimes(healthy(tmp_path, platform=lambda: nothing))
    assert fix.status == "fix" and "paddlepaddle==3.2.2" in fix.fix
    # the mesh engine needs no runtime: still ready
    assert run_doctor(healthy(tmp_path, platform=lambda: nothing)).ready


def test_fomm_weights(tmp_path: Path) -> None:
    none = check_weights(healthy(tmp_path, find_weights=lambda size: None))
    assert none.status == "fix" and none.fix == "mimicam weights fetch"
    assert "only --engine fomm needs them" in none.summary
    ok = check_weights(healthy(tmp_path))
    assert ok.status == "ok" and "layout OK" in ok.summary and "sha256 abababababab" in ok.summary
    bad = check_weights(healthy(tmp_path, inspect_weights=lambda p: (False, "12 keys missing",
                                                                     "cd" * 32)))
    assert bad.status == "fix" and "12 keys missing" in bad.summary
    assert bad.fix == "delete the damaged file and run mimicam weights fetch --size 256"
    broken = check_weights(healthy(tmp_path, inspect_weights=_raise(ValueError("truncated"))))
    assert broken.status == "fix" and "truncated" in broken.summary


def test_mediapipe_that_does_not_load_leaves_no_engine(tmp_path: Path) -> None:
    probes = healthy(tmp_path, load_mediapipe=_raise(RuntimeError("model file missing")),
                     find_weights=lambda size: None)
    report = run_doctor(probes)
    mp = report.get("mediapipe")
    assert mp is not None and mp.status == "fix" and "mediapipe==0.10.21" in mp.fix
    engines = report.get("engines")
    assert engines is not None and engines.status == "fix"
    assert "mesh: no" in engines.summary and "fomm: needs weights" in engines.summary
    assert not report.ready and "an animation engine" in report.missing
    # with weights, fomm still runs
    assert run_doctor(healthy(tmp_path, load_mediapipe=_raise(RuntimeError("x")))).ready


def test_port_in_use_is_found_for_real() -> None:
    from live.jobs.doctor import _port_problem

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        check = check_http(Probes(http=("127.0.0.1", port), port_problem=_port_problem))
    assert check.status == "fix" and f"cannot serve on 127.0.0.1:{port}" in check.summary
    assert "--http 8090" in check.fix
    free = check_http(Probes(http=("127.0.0.1", port), port_problem=_port_problem))
    assert free.status == "ok"


def test_no_display_and_output_rule(tmp_path: Path) -> None:
    check = check_display(healthy(tmp_path, preview=lambda: (False, "no display")))
    assert check.status == "fix" and "--no-preview" in check.fix
    # no virtual camera and no display, but the HTTP page: still an output
    probes = healthy(tmp_path, preview=lambda: (False, "no display"),
                     import_pyvirtualcam=_raise(ImportError("no")))
    assert run_doctor(probes).ready
    probes.port_problem = lambda host, port: "Address already in use"
    report = run_doctor(probes)
    assert not report.ready and report.missing == [
        "an output (virtual camera, preview window or the HTTP page)"]


def _machine_has_video() -> bool:
    return Path("/sys/class/video4linux").exists() or bool(list(Path("/dev").glob("video*")))


@pytest.mark.skipif(_machine_has_video() or Path("/sys/module/v4l2loopback").exists(),
                    reason="this machine has a video device or v4l2loopback")
def test_doctor_for_real_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    webcam = next(ln for ln in lines if "webcam " in ln[:25])
    assert webcam.startswith("FIX  webcam          no webcam found")
    assert "Fix: plug in a webcam" in webcam and "--driver" in webcam
    vcam = next(ln for ln in lines if "virtual camera" in ln[:25])
    assert vcam.startswith("FIX  virtual camera  v4l2loopback is not loaded")
    assert "sudo modprobe v4l2loopback devices=1 exclusive_caps=1" in vcam
    assert any(ln.startswith("OK   engines         mesh: yes") for ln in lines)
    assert any(ln.startswith("OK   MediaPipe") for ln in lines)
    assert lines[-1].startswith("not ready for mimicam live: missing a webcam")
    assert main(["doctor", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ready"] is False
    by_key = {c["key"]: c for c in data["checks"]}
    assert by_key["webcam"]["status"] == "fix" and by_key["vcam"]["status"] == "fix"
    assert by_key["mediapipe"]["status"] == "ok"
