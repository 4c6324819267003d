"""The ``mimicam serve`` models' logic without Triton: portrait LRU and spool, sessions,
tokens, per-request errors, the model repository; and the command line's checks (no
../shared, no Triton needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibrate.errors import MimicamError, NoFaceError
from live.engines.remote import (
    FLAG_FACE,
    FLAG_NEW_SESSION,
    STATUS_BAD_REQUEST,
    STATUS_OK,
    STATUS_UNAUTHORIZED,
    STATUS_UNKNOWN_PORTRAIT,
    STATUS_UNKNOWN_SESSION,
    TOKEN_PARAMETER,
    parse_url,
)
from live.jobs.serve import (
    AnimationService,
    ServeOptions,
    SpoolStore,
    check_bind,
    serve_models,
)


class FakeEngine:
    """Returns the portrait shifted by the number of frames seen (state per engine)."""

    name = "fake"
    size = 32
    closed = 0

    def __init__(self) -> None:
        self.frames = 0
        self.portrait: Any = None
        self.calibrated = False

    def prepare(self, portrait: np.ndarray, *,
                picture: tuple[int, int, int, int] | None = None,
                context: np.ndarray | None = None) -> np.ndarray:
        if not portrait.any():
            raise NoFaceError("no face found in the portrait")
        out = portrait.copy()
        if picture is not None:  # the made-up border marked, so a test can see the box used
            x0, y0, x1, y1 = picture
            inside = np.zeros(out.shape[:2], bool)
            inside[y0:y1, x0:x1] = True
            out[~inside] = 0
        return out

    def set_portrait(self, prepared: Any) -> None:
        self.portrait = prepared

    def calibrate(self, neutral: Any) -> None:
        self.calibrated = True

    def recalibrate(self) -> None:
        self.calibrated = False

    def process(self, driving: Any, t: float) -> np.ndarray:
        self.frames += 1
        return (self.portrait + self.frames).astype(np.uint8)

    def close(self) -> None:
        FakeEngine.closed += 1


class Req(dict):  # type: ignore[type-arg]
    def __init__(self, data: dict[str, np.ndarray], token: str | None = None) -> None:
        super().__init__(data)
        self.parameters = {TOKEN_PARAMETER: token} if token else {}


def animate_request(session: str, pid: str, flags: int, token: str | None = None,
                    landmarks: np.ndarray | None = None) -> Req:
    lms = np.zeros((1, 3), np.float32) if landmarks is None else landmarks
    return Req({"session": np.array([[session.encode()]], dtype=object),
                "portrait_id": np.array([[pid.encode()]], dtype=object),
                "image": np.full((1, 32, 32, 3), 7, np.uint8), "landmarks": lms[None],
                "crop_to_frame": np.array([[[1.0, 0, 0], [0, 1.0, 0]]]),
                "t": np.zeros((1, 1)), "op": np.zeros((1, 1), np.int32),
                "flags": np.array([[flags]], np.int32)}, token)


def test_portraits_are_cached_by_content_and_bounded() -> None:
    service = AnimationService(FakeEngine, "fake|x", portrait_cache=2, max_sessions=2)
    images = [np.full((32, 32, 3), i + 1, np.uint8) for i in range(3)]
    ids = [service.add_portrait(im) for im in images]
    assert service.add_portrait(images[2].copy()) == ids[2] and len(set(ids)) == 3
    assert ids[0] not in service._portraits and len(service._portraits) == 2
    other = AnimationService(FakeEngine, "fake|y")
    assert other.portrait_key(images[0]) != service.portrait_key(images[0])


def portrait_request(images: np.ndarray, pictures: np.ndarray | None = None) -> Req:
    data = {"image": images}
    if pictures is not None:
        data["picture"] = pictures
    return Req(data)


def test_the_portrait_model_takes_the_crops_photo_box() -> None:
    """A portrait sent with its photo box is prepared with it (the engine keeps the crop's
    made-up border out of the picture) and is another portrait than the crop alone; a
    malformed box is an error for its own request."""
    service = AnimationService(FakeEngine, "fake|x")
    image = np.full((32, 32, 3), 5, np.uint8)
    [plain] = service.infer_portrait([portrait_request(image[None])])
    [boxed] = service.infer_portrait([portrait_request(
        np.stack([image, image]), np.array([[0, 0, 32, 24], [0, 0, 32, 24]], np.int32))])
    assert list(plain["status"].reshape(-1)) == [STATUS_OK]
    assert list(boxed["status"].reshape(-1)) == [STATUS_OK, STATUS_OK]
    pid = boxed["portrait_id"].reshape(-1)[0].decode()
    assert pid == boxed["portrait_id"].reshape(-1)[1].decode()
    assert pid != plain["portrait_id"].reshape(-1)[0].decode()
    out = service.animate("s", pid, None, 0.0, flags=FLAG_NEW_SESSION)
    assert (out[:24] == 6).all() and (out[24:] == 1).all()  # prepared with the box
    # the same crop with the same box again: the cached portrait
    assert service.add_portrait(image, (0, 0, 32, 24)) == pid
    [bad] = service.infer_portrait([portrait_request(image[None],
                                                     np.array([[0, 0, 32.5, 24]]))])
    assert list(bad["status"].reshape(-1)) == [STATUS_BAD_REQUEST]
    assert "picture: expected 4 integers" in bad["error"].reshape(-1)[0].decode()


def test_sessions_keep_their_own_state_and_errors_stay_per_request() -> None:
    service = AnimationService(FakeEngine, "fake|x", max_sessions=2)
    [r] = service.infer_portrait([Req({"image": np.full((1, 32, 32, 3), 5, np.uint8)})])
    assert int(r["status"][0, 0]) == STATUS_OK
    pid = r["portrait_id"][0, 0].decode()
    new = FLAG_FACE | FLAG_NEW_SESSION
    out = service.infer_animate([
        animate_request("a", pid, new), animate_request("b", pid, new),
        animate_request("c", "nope", new), animate_request("d", pid, FLAG_FACE),
        animate_request("e", pid, new, landmarks=np.zeros((5000, 3), np.float32))])
    assert [int(o["status"][0, 0]) for o in out] == [
        STATUS_OK, STATUS_OK, STATUS_UNKNOWN_PORTRAIT, STATUS_UNKNOWN_SESSION,
        STATUS_BAD_REQUEST]
    assert out[0]["image"][0, 0, 0, 0] == 6 and out[1]["image"][0, 0, 0, 0] == 6
    [again] = service.infer_animate([animate_request("a", pid, FLAG_FACE)])
    assert again["image"][0, 0, 0, 0] == 7  # session a's own frame count
    # a third session evicts the oldest one (its engine closed)
    closed = FakeEngine.closed
    service.infer_animate([animate_request("f", pid, new)])
    assert FakeEngine.closed == closed + 1 and len(service._sessions) == 2
    # no face in the portrait, an oversized one: errors for those requests
    bad = service.infer_portrait([Req({"image": np.zeros((1, 32, 32, 3), np.uint8)}),
                                  Req({"image": np.ones((1, 16, 4096, 3), np.uint8)})])
    assert [int(b["status"][0, 0]) for b in bad] == [STATUS_BAD_REQUEST] * 2
    assert b"no face" in bad[0]["error"][0, 0] and b"side out of range" in bad[1]["error"][0, 0]


def test_two_instances_take_one_sessions_frames_in_turn() -> None:
    """Two model instances (threads) with frames of the same session: never overlapping."""
    import threading
    import time

    running = [0]
    overlaps = [0]

    class SlowEngine(FakeEngine):
        def process(self, driving: Any, t: float) -> np.ndarray:
            running[0] += 1
            overlaps[0] += running[0] > 1
            time.sleep(0.002)
            running[0] -= 1
            return super().process(driving, t)

    service = AnimationService(SlowEngine, "fake|x", max_sessions=4)
    pid = service.add_portrait(np.full((32, 32, 3), 5, np.uint8))
    service.infer_animate([animate_request("s", pid, FLAG_FACE | FLAG_NEW_SESSION)])

    def run() -> None:
        for _ in range(20):
            [o] = service.infer_animate([animate_request("s", pid, FLAG_FACE)])
            assert int(o["status"][0, 0]) == STATUS_OK

    threads = [threading.Thread(target=run) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert overlaps[0] == 0
    [last] = service.infer_animate([animate_request("s", pid, FLAG_FACE)])
    assert last["image"][0, 0, 0, 0] == 5 + 42  # one engine saw all 42 frames
    service.close()


def test_token_is_required_when_set() -> None:
    service = AnimationService(FakeEngine, "fake|x", token="s3cret")
    image = {"image": np.full((1, 32, 32, 3), 5, np.uint8)}
    out = service.infer_portrait([Req(image), Req(image, "wrong"), Req(image, "s3cret")])
    assert [int(o["status"][0, 0]) for o in out] == [STATUS_UNAUTHORIZED] * 2 + [STATUS_OK]
    [info] = service.infer_info([Req({"probe": np.zeros((1, 1), np.int32)})])
    assert int(info["status"][0, 0]) == STATUS_UNAUTHORIZED


def test_bind_url_and_flag_checks() -> None:
    from live.cli.main import main

    with pytest.raises(MimicamError, match="token"):
        check_bind(ServeOptions(host="0.0.0.0"))
    check_bind(ServeOptions(host="192.168.1.5", token="x"))
    check_bind(ServeOptions())
    assert parse_url("grpc://h:8001") == ("grpc", "h:8001")
    assert parse_url("grpcs://h:8001/") == ("grpcs", "h:8001")
    with pytest.raises(MimicamError, match="certificate and its key"):
        check_bind(ServeOptions(tls_cert=Path("c.pem")))
    with pytest.raises(MimicamError, match="URL"):
        parse_url("h:8001")
    assert main(["animate", "--source-image", "a.jpg", "--driving-video", "b.mp4", "-o",
                 "c.mp4", "--fallback", "mesh"]) == 2


def test_the_portrait_spool_is_shared_between_processes_and_bounded(tmp_path: Path) -> None:
    """The portrait model and the animate instances are processes of their own: what one
    stores the others find, what is evicted is gone for all, the newest-used are kept."""
    writer, reader = SpoolStore(tmp_path, 2), SpoolStore(tmp_path, 2)
    writer.TOUCH_EVERY_S = reader.TOUCH_EVERY_S = 0.0
    keys = [f"{i:032x}" for i in range(1, 4)]
    writer.put(keys[0], {"n": 0})
    writer.put(keys[1], {"n": 1})
    assert reader.get(keys[0]) == {"n": 0}  # loaded from the file, and used: now the newest
    writer.put(keys[2], {"n": 2})
    assert sorted(p.stem for p in tmp_path.glob("*.pkl")) == [keys[0], keys[2]]
    assert reader.get(keys[1]) is None and writer.get(keys[1]) is None
    assert reader.get(keys[2]) == {"n": 2} and len(reader) == 2
    writer.clear()  # every portrait forgotten (a restart): also for the other process
    assert reader.get(keys[0]) is None and reader.get(keys[2]) is None and len(reader) == 0
    # a key from a client never names another file
    assert reader.get("../../etc/passwd") is None and "../x" not in reader
    with pytest.raises(ValueError, match="hex key"):
        writer.put("../x", {})
    # a service over the spool: a portrait sent again costs a hash
    service = AnimationService(FakeEngine, "fake|x", store=SpoolStore(tmp_path, 2))
    pid = service.add_portrait(np.full((32, 32, 3), 9, np.uint8))
    other = AnimationService(FakeEngine, "fake|x", store=SpoolStore(tmp_path, 2))
    out = other.animate("s", pid, None, 0.0, flags=FLAG_NEW_SESSION)
    assert out[0, 0, 0] == 10  # the portrait prepared by the first service, one frame on


def test_the_animate_model_keeps_a_session_on_one_instance_and_batches_sessions() -> None:
    """The repository's animate model is stateful (a sequence batcher: a session's frames
    stay on the instance holding its engine), with the options' instances and delay."""
    options = ServeOptions(instances=3, max_batch=4, queue_delay_us=700, max_sessions=9,
                           session_idle_s=2.5)
    models = {m.name: m for m in serve_models(options)}
    assert set(models) == {"info", "portrait", "animate"}
    animate = models["animate"].config(Path("spec.pkl"))
    assert "sequence_batching" in animate and "dynamic_batching" not in animate
    assert "max_sequence_idle_microseconds: 2500000" in animate
    assert "max_candidate_sequences: 9" in animate
    assert "max_queue_delay_microseconds: 700" in animate
    assert "count: 3" in animate and "max_batch_size: 4" in animate
    assert '"spec.pkl"' in animate and 'backend: "python"' in animate
    portrait = models["portrait"].config(Path("spec.pkl"))
    assert "dynamic_batching { max_queue_delay_microseconds: 700 }" in portrait
    assert "count: 1" in portrait and "sequence_batching" not in portrait
    assert 'name: "picture" data_type: TYPE_INT32 dims: [ 4 ] optional: true' in portrait


def test_the_repository_holds_each_model(tmp_path: Path) -> None:
    from live.jobs.triton import write_repository

    root = write_repository(tmp_path / "models", serve_models(ServeOptions()), tmp_path / "s")
    for name in ("info", "portrait", "animate"):
        assert (root / name / "config.pbtxt").read_text().startswith(f'name: "{name}"')
        assert "live.jobs.triton_models" in (root / name / "1" / "model.py").read_text()
