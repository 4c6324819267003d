"""``mimicam serve`` on loopback: the remote engine against a real Triton server (CPU).

One server per module (random free ports, stopped at the end; two ``animate`` instances, each
a process of Triton's Python backend); the mesh engine on a real portrait driven by a real
clip, so the module needs ../shared. The slow test starts two more servers (``mimicam serve``
stopped with SIGTERM, then one from this process) to lose and regain one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc")

from _live_fakes import SpyEngine
from _serve import free_port

from calibrate.errors import MimicamError
from live.engines.remote import (
    _SEQUENCE_GONE,
    STATUS_BAD_REQUEST,
    STATUS_UNKNOWN_PORTRAIT,
    RemoteEngine,
    RemoteError,
    pack_frame,
    unpack_frame,
    unpack_reply,
)
from live.jobs.serve import ServeOptions, make_spec, triton_server
from live.packets import FaceCrop

pytestmark = pytest.mark.fixtures

SIZE = 256
FRAMES = 12
TOKEN = "s3cret"
IDLE_S = 3.0  # the server lets a session go after this long without frames


@pytest.fixture(scope="module")
def clip(portraits_dir: Path, driving_dir: Path) -> tuple[np.ndarray, list[FaceCrop | None]]:
    from live.face.portraits import find_portrait, load_image
    from live.face.tracking import FaceTracker
    from live.io.video import VideoReader

    crop = find_portrait(load_image(portraits_dir / "lp_s42.jpg"), SIZE).crop.image
    faces: list[FaceCrop | None] = []
    with FaceTracker(crop_size=SIZE) as tracker, VideoReader(driving_dir / "lp_d0.mp4") as r:
        for frame in r:
            if frame.index >= FRAMES:
                break
            faces.append(tracker.process(frame).face)
    faces[5] = None  # one lost face: the hold runs on the server too
    return crop, faces


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    from live.engines.base import EngineOptions

    options = ServeOptions(http_port=free_port(), grpc_port=free_port(),
                           metrics_port=free_port(), max_batch=8, queue_delay_us=20000,
                           token=TOKEN, portrait_cache=2, instances=2,
                           session_idle_s=IDLE_S)
    eo = EngineOptions().apply(crop_size=SIZE)
    with triton_server(make_spec("mesh", eo, options=options)) as running:
        yield {"options": options, "server": running, "engine_options": eo,
               "grpc": f"grpc://127.0.0.1:{options.grpc_port}",
               "http": f"http://127.0.0.1:{options.http_port}"}


def local_frames(eo: Any, crop: np.ndarray, faces: list[FaceCrop | None], *,
                 picture: tuple[int, int, int, int] | None = None) -> list[np.ndarray]:
    from live.engines.base import create_engine

    engine = create_engine("mesh", eo)
    engine.set_portrait(engine.prepare(crop, picture=picture))
    out = [engine.process(f, i / 25) for i, f in enumerate(faces)]
    engine.close()
    return out


def remote_frames(url: str, crop: np.ndarray, faces: list[FaceCrop | None], *,
                  packed: bool = True,
                  ready: threading.Barrier | None = None) -> list[np.ndarray]:
    engine = RemoteEngine(url, size=SIZE, token=TOKEN)
    assert engine.packed  # this server takes protocol 2
    engine.packed = packed  # False: as a client of protocol 1 (the named tensors) would
    engine.set_portrait(engine.prepare(crop))
    if ready is not None:  # the clients stream their frames at the same time
        ready.wait(timeout=120)
    out = [engine.process(f, i / 25) for i, f in enumerate(faces)]
    engine.close()
    return out


def test_concurrent_clients_match_the_in_process_engine_and_get_batched(
        server: dict[str, Any], clip: tuple[np.ndarray, list[FaceCrop | None]]) -> None:
    crop, faces = clip
    expected = local_frames(server["engine_options"], crop, faces)
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    ready = threading.Barrier(4)  # the portraits' uploads take turns; the frames must not

    def run(i: int) -> None:
        try:  # both transports (the named tensors of older clients: the next test; Triton
            # does not batch requests of the two protocols together)
            url = server["grpc"] if i % 2 == 0 else server["http"]
            results[i] = remote_frames(url, crop, faces, ready=ready)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for frames in results.values():
        assert len(frames) == len(expected)
        for got, want in zip(frames, expected, strict=True):
            assert got.shape == want.shape and got.dtype == np.uint8
            np.testing.assert_array_equal(got, want)
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{server['options'].metrics_port}/metrics", timeout=5).read().decode()
    requests = executions = 0.0
    for line in metrics.splitlines():
        if line.startswith('nv_inference_request_success{model="animate"'):
            requests += float(line.rsplit(" ", 1)[1])
        if line.startswith('nv_inference_exec_count{model="animate"'):
            executions += float(line.rsplit(" ", 1)[1])
    assert executions > 0 and requests / executions > 1.0, (requests, executions)


def test_a_client_of_the_named_tensors_gets_the_same_frames(
        server: dict[str, Any], clip: tuple[np.ndarray, list[FaceCrop | None]]) -> None:
    """Protocol 1 (an older client: one tensor per field) is still served, frame for frame."""
    crop, faces = clip
    expected = local_frames(server["engine_options"], crop, faces)
    for got, want in zip(remote_frames(server["grpc"], crop, faces, packed=False), expected,
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_unknown_portrait_is_sent_again_with_its_photo_box(
        server: dict[str, Any], clip: tuple[np.ndarray, list[FaceCrop | None]]) -> None:
    """The served engine gets the crop's photo box (its last rows made-up border here) and
    draws what a local engine given the box draws, also after the server forgot the portrait
    and the client sent it again."""
    crop, faces = clip
    photo = (0, 0, SIZE, SIZE - 24)
    expected = local_frames(server["engine_options"], crop, faces[:4], picture=photo)
    plain = local_frames(server["engine_options"], crop, faces[:4])
    assert any(not np.array_equal(a, b) for a, b in zip(expected, plain, strict=True))
    engine = RemoteEngine(server["grpc"], size=SIZE, token=TOKEN)
    assert engine.sends_picture
    engine.set_portrait(engine.prepare(crop, picture=photo))
    got = [engine.process(f, i / 25) for i, f in enumerate(faces[:2])]
    server["server"].forget_portraits()  # the server forgets (LRU eviction, restart)
    got += [engine.process(f, (i + 2) / 25) for i, f in enumerate(faces[2:4])]
    assert engine.connected and engine.calibrated and engine._portrait is not None
    assert engine._portrait.picture == photo
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    engine.close()


def test_a_session_let_go_while_idle_is_opened_again(
        server: dict[str, Any], clip: tuple[np.ndarray, list[FaceCrop | None]]) -> None:
    """Triton keeps a session's frames on the instance holding its engine (a sequence) and
    lets it go after ``session_idle_s`` without frames; the client then opens it again (its
    neutral pose sent again) and gets the frames an uninterrupted client gets."""
    crop, faces = clip
    expected = local_frames(server["engine_options"], crop, faces[:4])
    engine = RemoteEngine(server["grpc"], size=SIZE, token=TOKEN)
    engine.set_portrait(engine.prepare(crop))
    got = [engine.process(f, i / 25) for i, f in enumerate(faces[:2])]
    time.sleep(IDLE_S + 1.5)
    sequence = engine._sequence
    got += [engine.process(f, (i + 2) / 25) for i, f in enumerate(faces[2:4])]
    assert engine._sequence != sequence and engine.connected
    assert got[2].shape == (SIZE, SIZE, 3)
    # after the idle spell the engine starts from the neutral again: the first frames match;
    # the later ones are animated, though not bit for bit (the smoothing restarted)
    for a, b in zip(got[:2], expected[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    engine.close()


def test_bad_requests_get_errors_and_a_good_client_goes_on(
        server: dict[str, Any], clip: tuple[np.ndarray, list[FaceCrop | None]]) -> None:
    import tritonclient.grpc as tc

    crop, faces = clip
    good = RemoteEngine(server["grpc"], size=SIZE, token=TOKEN)
    good.set_portrait(good.prepare(crop))
    good.process(faces[0], 0.0)
    # no token: refused
    with pytest.raises(RemoteError, match="token"):
        RemoteEngine(server["grpc"], size=SIZE).prepare(crop)
    # an oversized portrait, and one without a face
    with pytest.raises(RemoteError, match="side out of range"):
        good.prepare(np.zeros((4000, 16, 3), np.uint8))
    with pytest.raises(RemoteError, match="no face"):
        good.prepare(np.zeros((64, 64, 3), np.uint8))
    # a wrong dtype never reaches the model: Triton refuses that request
    client = tc.InferenceServerClient(url=f"127.0.0.1:{server['options'].grpc_port}")
    bad = tc.InferInput("image", [1, 8, 8, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(tc.InferenceServerException):
        client.infer("portrait", [bad], parameters={"mimicam_token": TOKEN})
    # unknown portrait id straight through the protocol: an error for that request
    arrays = good._arrays(faces[1], 0.04, 0, 0)
    arrays["portrait_id"] = np.array([[b"nope"]], dtype=object)
    inputs = []
    for name, value in arrays.items():
        dtype = {"O": "BYTES", "u": "UINT8", "f": "FP32" if value.dtype == np.float32
                 else "FP64", "i": "INT32"}[value.dtype.kind]
        t = tc.InferInput(name, list(value.shape), dtype)
        t.set_data_from_numpy(value)
        inputs.append(t)
    # animate is stateful: a request outside a sequence (a session) is refused by Triton, and
    # so is one of a sequence it does not hold (another server's, or let go while idle): the
    # client knows that answer and opens its session again
    with pytest.raises(tc.InferenceServerException, match="correlation ID"):
        client.infer("animate", inputs, parameters={"mimicam_token": TOKEN})
    with pytest.raises(tc.InferenceServerException, match=_SEQUENCE_GONE):
        client.infer("animate", inputs, parameters={"mimicam_token": TOKEN},
                     sequence_id=777)
    result = client.infer("animate", inputs, parameters={"mimicam_token": TOKEN},
                          sequence_id=12345, sequence_start=True)
    assert int(result.as_numpy("status")[0, 0]) != 0
    assert b"unknown portrait" in result.as_numpy("error")[0, 0]
    # the same as protocol 2: the packed frame, and the reply (asked for alone)
    arrays = good._packed_arrays(faces[1], 0.04, 0, 0)
    frame = unpack_frame(arrays["frame"][0])
    arrays["frame"] = pack_frame(replace(frame, portrait_id="nope"))[None]
    inputs = []
    for name, value in arrays.items():
        t = tc.InferInput(name, list(value.shape), "UINT8")
        t.set_data_from_numpy(value)
        inputs.append(t)
    result = client.infer("animate", inputs, outputs=[tc.InferRequestedOutput("reply")],
                          parameters={"mimicam_token": TOKEN}, sequence_id=12345)
    status, error = unpack_reply(result.as_numpy("reply")[0])
    assert status == STATUS_UNKNOWN_PORTRAIT and "unknown portrait" in error
    # a truncated frame: an error for that request only
    inputs[1] = tc.InferInput("frame", [1, 20], "UINT8")
    inputs[1].set_data_from_numpy(arrays["frame"][:, :20].copy())
    result = client.infer("animate", inputs, outputs=[tc.InferRequestedOutput("reply")],
                          parameters={"mimicam_token": TOKEN}, sequence_id=12345,
                          sequence_end=True)
    assert unpack_reply(result.as_numpy("reply")[0])[0] == STATUS_BAD_REQUEST
    client.close()
    # malformed landmarks: an error for that request only
    broken = FaceCrop(image=faces[2].image, crop_to_frame=faces[2].crop_to_frame,  # type: ignore[union-attr]
                      frame_index=2, t_capture=0.0, landmarks=np.zeros((5, 3), np.float32))
    with pytest.raises(RemoteError):
        good.process(broken, 0.08)
    assert good.process(faces[3], 0.12).shape == (SIZE, SIZE, 3)
    good.close()
    assert STATUS_BAD_REQUEST == 1


@pytest.mark.slow  # two servers started and stopped: ~25 s
def test_absent_server_is_one_clear_error_and_a_lost_one_holds_the_pose(
        clip: tuple[np.ndarray, list[FaceCrop | None]], tmp_path: Path) -> None:
    from live.engines.base import EngineOptions, create_engine

    crop, faces = clip
    port = free_port()
    with pytest.raises(MimicamError, match=f"no mimicam server at grpc://127.0.0.1:{port}"):
        RemoteEngine(f"grpc://127.0.0.1:{port}", size=SIZE, timeout_s=2)
    eo = EngineOptions().apply(crop_size=SIZE)
    url = f"grpc://127.0.0.1:{port}"
    http_port, metrics_port = free_port(), free_port()
    # the first server: the command line, stopped with SIGTERM
    cmd = [sys.executable, "-m", "live.cli", "serve", "--crop-size", str(SIZE),
           "--grpc-port", str(port), "--http-port", str(http_port),
           "--metrics-port", str(metrics_port)]
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as log:  # Triton logs a lot: a file, not a pipe that could fill
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                held = RemoteEngine(url, timeout_s=2, backoff_s=(0.2, 0.4))
                break
            except MimicamError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    log_file.read_text()[-2000:]
                time.sleep(0.3)
        local = RemoteEngine(url, timeout_s=2, backoff_s=(0.2, 0.4))
        fallback = SpyEngine(create_engine("mesh", eo))
        local.set_fallback(fallback)
        assert held.size == SIZE and held.server_engine == "mesh"
        photo = (0, 0, SIZE, SIZE - 8)  # the crop's last rows: made-up border
        held.set_portrait(held.prepare(crop))
        local.set_portrait(local.prepare(crop, picture=photo))
        last = held.process(faces[0], 0.0)
        local.process(faces[0], 0.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log_text = log_file.read_text()
    assert proc.returncode == 0, log_text[-2000:]
    assert "server stopped" in log_text
    # a clean stop: Triton unloads its models in time (with 2 s it gave up on every stop and
    # its Python-backend stubs died "non-graceful", sometimes left behind)
    assert "exited with failure" not in log_text and "Non-graceful" not in log_text, \
        log_text[-2000:]
    # the server is gone: no crash; the last pose is held, or the fallback animates
    np.testing.assert_array_equal(held.process(faces[1], 0.04), last)
    assert not held.connected
    out = local.process(faces[2], 0.08)
    assert out.shape == (SIZE, SIZE, 3) and not local.connected
    assert fallback.pictures == [photo]  # the fallback knows where the photo ends
    # a new server (no portraits, no sessions): both reconnect by themselves
    options = ServeOptions(http_port=http_port, grpc_port=port, metrics_port=metrics_port)
    with triton_server(make_spec("mesh", eo, options=options)):
        time.sleep(0.5)
        for engine in (held, local):
            engine.packed = False  # as if the lost server had been an older one
            out = engine.process(faces[3], 0.12)
            assert engine.connected and out.shape == (SIZE, SIZE, 3)
            assert engine.packed  # asked the new server again on reconnecting
            engine.close()


@pytest.mark.slow  # one more server: ~8 s
def test_grpc_over_tls(clip: tuple[np.ndarray, list[FaceCrop | None]], tmp_path: Path) -> None:
    import shutil

    from live.engines.base import EngineOptions

    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    crop, faces = clip
    options = ServeOptions(http_port=free_port(), grpc_port=free_port(),
                           metrics_port=free_port(), tls_cert=cert, tls_key=key)
    with triton_server(make_spec("mesh", EngineOptions().apply(crop_size=SIZE),
                                 options=options)):
        engine = RemoteEngine(f"grpcs://localhost:{options.grpc_port}", tls_ca=cert)
        engine.set_portrait(engine.prepare(crop))
        assert engine.process(faces[0], 0.0).shape == (SIZE, SIZE, 3)
        engine.close()
        # a plain-text client cannot talk to it
        with pytest.raises(MimicamError, match="no mimicam server"):
            RemoteEngine(f"grpc://127.0.0.1:{options.grpc_port}", timeout_s=2)


def test_a_server_that_cannot_start_is_one_clear_error() -> None:
    """A port already taken: Triton exits while starting; the error says so, in Triton's own
    words, at once instead of after the start-up timeout."""
    import socket

    from live.engines.base import EngineOptions

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        options = ServeOptions(http_port=free_port(), grpc_port=port,
                               metrics_port=free_port(), instances=1)
        spec = make_spec("mesh", EngineOptions().apply(crop_size=SIZE), options=options)
        with pytest.raises(MimicamError, match="Triton exited while starting.*"
                           f"(address|Address|bind|{port})"), triton_server(spec):
            pass
