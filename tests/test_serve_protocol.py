"""The ``animate`` model's protocol 2 (one packed ``frame`` input, one ``reply`` output) and the
server's compute-thread caps, without Triton (no ../shared, no PyTriton needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_serve_service import FakeEngine  # the tests' folder is on sys.path

from live.blas import limit_openblas_threads
from live.engines.remote import (
    FLAG_FACE,
    FLAG_NEW_SESSION,
    FLAG_RECALIBRATE,
    FRAME_INPUT,
    MAX_LANDMARKS,
    OP_CALIBRATE,
    PICTURE_INPUT,
    REPLY_OUTPUT,
    STATUS_BAD_REQUEST,
    STATUS_OK,
    STATUS_UNKNOWN_PORTRAIT,
    FrameRequest,
    pack_frame,
    pack_replies,
    unpack_frame,
    unpack_reply,
)
from live.jobs.serve import AnimationService, cap_compute_threads


def _request(landmarks: np.ndarray | None) -> FrameRequest:
    rng = np.random.default_rng(3)
    return FrameRequest(session="9f" * 16, portrait_id="ab" * 16, op=OP_CALIBRATE,
                        flags=FLAG_FACE | FLAG_RECALIBRATE | FLAG_NEW_SESSION,
                        t=1 / 3, crop_to_frame=rng.normal(size=(2, 3)) * 1e3,
                        landmarks=landmarks)


def test_a_packed_frame_comes_back_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    lms = rng.normal(size=(478, 3)).astype(np.float32) * 300
    lms[0] = [-0.0, np.float32(1e-45), np.finfo(np.float32).max]  # sign, subnormal, max
    req = _request(lms)
    data = pack_frame(req)
    assert data.dtype == np.uint8 and data.ndim == 1
    got = unpack_frame(data)
    assert (got.session, got.portrait_id, got.op, got.flags) == (
        req.session, req.portrait_id, req.op, req.flags)
    assert np.float64(got.t).tobytes() == np.float64(req.t).tobytes()
    assert got.crop_to_frame.dtype == np.float64 and got.crop_to_frame.shape == (2, 3)
    assert got.crop_to_frame.tobytes() == np.asarray(req.crop_to_frame).tobytes()
    assert got.landmarks is not None and got.landmarks.dtype == np.float32
    assert got.landmarks.tobytes() == lms.tobytes()
    assert got.landmarks.flags.writeable  # the engine may work in place
    # no landmarks: none on the other side either (not an empty array)
    assert unpack_frame(pack_frame(_request(None))).landmarks is None


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:10], "shorter than its header"),
    (lambda d: d[:-1], "its header says"),
    (lambda d: np.concatenate([d, d[:4]]), "its header says"),
    (lambda d: np.concatenate([[np.uint8(1)], d[1:]]), "version 1"),
])
def test_malformed_frames_are_refused(damage: Any, message: str) -> None:
    data = pack_frame(_request(np.zeros((5, 3), np.float32)))
    with pytest.raises(ValueError, match=message):
        unpack_frame(damage(data))


def test_too_many_landmarks_are_refused() -> None:
    data = pack_frame(_request(np.zeros((MAX_LANDMARKS + 1, 3), np.float32)))
    with pytest.raises(ValueError, match="too many landmarks"):
        unpack_frame(data)


def test_replies_carry_status_and_error_per_row() -> None:
    replies = pack_replies([STATUS_OK, STATUS_UNKNOWN_PORTRAIT, STATUS_BAD_REQUEST],
                           ["", "unknown portrait 'x'", "café: ünïcode"])
    assert replies.dtype == np.uint8 and replies.shape[0] == 3
    assert [unpack_reply(r) for r in replies] == [
        (STATUS_OK, ""), (STATUS_UNKNOWN_PORTRAIT, "unknown portrait 'x'"),
        (STATUS_BAD_REQUEST, "café: ünïcode")]


class CountingEngine(FakeEngine):
    """Returns the portrait plus the frames seen; records the faces it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.faces: list[Any] = []

    def process(self, driving: Any, t: float) -> np.ndarray:
        self.faces.append(driving)
        return super().process(driving, t)


class Req(dict):  # type: ignore[type-arg]
    """A request as PyTriton hands it over: inputs, parameters, the outputs asked for."""

    def __init__(self, data: dict[str, np.ndarray], outputs: list[str] | None = None) -> None:
        super().__init__(data)
        self.parameters: dict[str, str] = {}
        self.requested_output_names = outputs


def packed(session: str, pid: str, flags: int, *, lms: np.ndarray | None = None,
           outputs: list[str] | None = None) -> Req:
    frame = pack_frame(FrameRequest(session=session, portrait_id=pid, op=0, flags=flags,
                                    t=0.25, crop_to_frame=np.array([[2.0, 0, 5], [0, 2.0, 7]]),
                                    landmarks=lms))
    return Req({"image": np.full((1, 32, 32, 3), 7, np.uint8), FRAME_INPUT: frame[None]},
               outputs)


def test_the_service_takes_packed_frames_and_makes_only_the_outputs_asked_for() -> None:
    engines: list[CountingEngine] = []

    def make() -> CountingEngine:
        engines.append(CountingEngine())
        return engines[-1]

    service = AnimationService(make, "fake|x")
    pid = service.add_portrait(np.full((32, 32, 3), 5, np.uint8))
    lms = np.arange(12, dtype=np.float32).reshape(4, 3)
    new = FLAG_FACE | FLAG_NEW_SESSION
    out = service.infer_animate([
        packed("a", pid, new, lms=lms, outputs=["image", REPLY_OUTPUT]),
        packed("b", "nope", new, outputs=["image", REPLY_OUTPUT]),
        Req({"image": np.full((1, 32, 32, 3), 7, np.uint8),
             FRAME_INPUT: pack_frame(FrameRequest("c", pid, 0, new, 0.0, np.eye(2, 3),
                                                  None))[None, :-3]},
            ["image", REPLY_OUTPUT]),
        packed("a", pid, FLAG_FACE, outputs=["image", "status", "error"])])
    assert sorted(out[0]) == ["image", REPLY_OUTPUT]  # no status, no error made
    assert unpack_reply(out[0][REPLY_OUTPUT][0]) == (STATUS_OK, "")
    assert out[0]["image"].shape == (1, 32, 32, 3) and out[0]["image"][0, 0, 0, 0] == 6
    status, error = unpack_reply(out[1][REPLY_OUTPUT][0])
    assert status == STATUS_UNKNOWN_PORTRAIT and "unknown portrait" in error
    status, error = unpack_reply(out[2][REPLY_OUTPUT][0])
    assert status == STATUS_BAD_REQUEST and "header says" in error
    assert sorted(out[3]) == ["error", "image", "status"]
    assert int(out[3]["status"][0, 0]) == STATUS_OK and out[3]["image"][0, 0, 0, 0] == 7
    # the engine got the frame's fields
    [session_a] = [e for e in engines if e.faces]
    face = session_a.faces[0]
    np.testing.assert_array_equal(face.landmarks, lms)
    np.testing.assert_array_equal(face.crop_to_frame, [[2.0, 0, 5], [0, 2.0, 7]])
    assert face.t_capture == 0.25 and session_a.faces[1].landmarks is None


def test_a_named_request_without_its_inputs_is_an_error_for_it_only() -> None:
    service = AnimationService(CountingEngine, "fake|x")
    pid = service.add_portrait(np.full((32, 32, 3), 5, np.uint8))
    out = service.infer_animate([
        Req({"image": np.full((1, 32, 32, 3), 7, np.uint8)}),
        packed("a", pid, FLAG_FACE | FLAG_NEW_SESSION)])
    assert int(out[0]["status"][0, 0]) == STATUS_BAD_REQUEST
    assert b"missing inputs" in out[0]["error"][0, 0]
    # a request that does not say which outputs it wants gets them all
    assert sorted(out[1]) == sorted(["image", "status", "error", REPLY_OUTPUT])
    assert int(out[1]["status"][0, 0]) == STATUS_OK


@pytest.fixture
def openblas() -> Iterator[dict[str, tuple[Any, Any]]]:
    """(getter, setter) of each OpenBLAS loaded here, by library path, each first asked for 2
    threads; their thread counts are put back afterwards. Skips without OpenBLAS, or when
    none runs more than one thread (nothing to cap)."""
    import ctypes

    import cv2  # noqa: F401 - OpenCV's own OpenBLAS, which the cap sets too

    from live.blas import loaded_openblas

    blas = {}
    for path in loaded_openblas():
        lib = ctypes.CDLL(path)
        for suffix in ("64_", ""):
            get = getattr(lib, f"openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype = ctypes.c_int
                put.argtypes = [ctypes.c_int]
                blas[path] = (get, put)
                break
    if not blas:
        pytest.skip("no OpenBLAS loaded (numpy built on another BLAS)")
    before = {path: get() for path, (get, _) in blas.items()}
    try:
        for _, put in blas.values():
            put(2)
        if max(int(get()) for get, _ in blas.values()) < 2:
            pytest.skip("every OpenBLAS here runs one thread anyway")
        yield blas
    finally:
        for path, (_, put) in blas.items():
            put(before[path])


def test_the_server_runs_openblas_on_one_thread_but_not_for_a_shared_runtime(
        openblas: dict[str, tuple[Any, Any]]) -> None:
    raised = {path: int(get()) for path, (get, _) in openblas.items()}
    shared = AnimationService(CountingEngine, "fake|x", serialize=True)
    assert cap_compute_threads(shared) == {}
    assert {path: get() for path, (get, _) in openblas.items()} == raised  # left alone
    own = AnimationService(CountingEngine, "fake|x")
    assert len(cap_compute_threads(own)) == len(openblas)
    assert all(get() == 1 for get, _ in openblas.values())


def test_openblas_threads_are_capped(openblas: dict[str, tuple[Any, Any]]) -> None:
    done = limit_openblas_threads(1)
    assert sorted(done) == sorted(Path(p).name for p in openblas)
    assert all(get() == 1 for get, _ in openblas.values())
    assert set(limit_openblas_threads(0).values()) == {1}  # never below one


@pytest.mark.parametrize("protocol, metadata, packed, picture", [
    ("grpc", {"animate": {"inputs": [{"name": "image"}, {"name": FRAME_INPUT}]},
              "portrait": {"inputs": [{"name": "image"}, {"name": PICTURE_INPUT}]}},
     True, True),
    ("grpc", {"animate": {"inputs": [{"name": "image"}, {"name": "session"}]},  # an older
              "portrait": {"inputs": [{"name": "image"}]}}, False, False),  # server
    ("http", {"animate": {"inputs": [{"name": FRAME_INPUT}]},
              "portrait": {"inputs": [{"name": "image"}]}}, True, False),
    ("grpc", RuntimeError("no such model"), False, False),
])
def test_the_client_sends_only_what_the_server_takes(
        protocol: str, metadata: Any, packed: bool, picture: bool) -> None:
    """Packed frames (protocol 2) and the portrait's photo box go only to a server whose
    models have those inputs."""
    import threading

    from live.engines.remote import RemoteEngine

    class Client:
        def get_model_metadata(self, model: str, **kwargs: Any) -> Any:
            assert model in ("animate", "portrait")
            if isinstance(metadata, Exception):
                raise metadata
            return metadata[model]

    engine = object.__new__(RemoteEngine)  # no server: only the probe is under test
    engine._protocol, engine._client, engine._http_lock = protocol, Client(), threading.Lock()
    engine._learn_server()
    assert engine.packed is packed and engine.sends_picture is picture
    sent: list[dict[str, np.ndarray]] = []

    def infer(model: str, arrays: dict[str, np.ndarray], outputs: Any) -> Any:
        sent.append(arrays)
        return {"portrait_id": np.array([b"p"], object), "status": np.zeros(1, np.int32),
                "error": np.array([b""], object)}

    engine._infer = infer  # type: ignore[method-assign]
    crop = np.zeros((8, 8, 3), np.uint8)
    assert engine.prepare(crop, picture=(0, 0, 8, 6)).picture == (0, 0, 8, 6)
    assert (PICTURE_INPUT in sent[-1]) is picture
    if picture:
        np.testing.assert_array_equal(sent[-1][PICTURE_INPUT], [[0, 0, 8, 6]])
    engine.prepare(crop)
    assert PICTURE_INPUT not in sent[-1]  # no box: the crop alone


def test_process_tree_cpu_counts_children() -> None:
    import os
    import shlex
    import signal
    import subprocess
    import sys
    import time

    from live.bench.serve import process_tree_cpu

    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc")
    burn = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
            "print('burnt', flush=True)\ntime.sleep(30)\n")
    # a shell (next to no CPU of its own) whose child burns 0.3 s of CPU, then sleeps
    shell = subprocess.Popen(["/bin/sh", "-c", f"{shlex.quote(sys.executable)} -c "
                              f"{shlex.quote(burn)}; true"], stdout=subprocess.PIPE,
                             start_new_session=True)
    try:
        assert shell.stdout is not None and shell.stdout.readline().strip() == b"burnt"
        time.sleep(0.05)
        assert process_tree_cpu(shell.pid) >= 0.25
    finally:
        os.killpg(shell.pid, signal.SIGKILL)  # the shell and its child (a group of its own)
        shell.wait()
    assert process_tree_cpu(2**22 + 7) != process_tree_cpu(2**22 + 7)  # no such pid: NaN
