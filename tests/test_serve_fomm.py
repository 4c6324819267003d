"""``mimicam serve --engine fomm`` on loopback with the tiny parity FOMM weights: two
concurrent remote clients get the frames of the in-process engine (one server per module,
random free ports, stopped at the end)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc")

from _serve import free_port

from live.engines.base import EngineOptions, create_engine
from live.engines.remote import RemoteEngine
from live.jobs.serve import ServeOptions, make_spec, triton_server
from live.packets import FaceCrop

pytestmark = pytest.mark.fixtures  # the tiny weights live in ../shared

OPTIONS = EngineOptions().apply(backend="onnxruntime")


def _rgb(chw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rint(chw.transpose(1, 2, 0) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def clip(tiny: dict[str, Any]) -> tuple[np.ndarray, list[FaceCrop | None]]:
    cases = tiny["cases"]
    faces: list[FaceCrop | None] = [
        FaceCrop(image=_rgb(d), crop_to_frame=np.array([[1.0, 0, 0], [0, 1.0, 0]]),
                 frame_index=i, t_capture=i / 25)
        for i, d in enumerate(cases["input__driving"])]
    faces.insert(2, None)
    return _rgb(cases["input__source"][0]), faces


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    options = ServeOptions(http_port=free_port(), grpc_port=free_port(),
                           metrics_port=free_port(), queue_delay_us=20000)
    with triton_server(make_spec("fomm", OPTIONS, model_dir=tiny_model, options=options)):
        yield f"grpc://127.0.0.1:{options.grpc_port}"


def test_concurrent_fomm_clients_match_the_in_process_engine(
        server: str, tiny_model: Path, clip: tuple[np.ndarray, list[FaceCrop | None]]) -> None:
    crop, faces = clip
    local = create_engine("fomm", OPTIONS, model_dir=tiny_model)
    local.set_portrait(local.prepare(crop))
    expected = [local.process(f, i / 25) for i, f in enumerate(faces)]
    local.close()
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            engine = RemoteEngine(server)
            engine.set_portrait(engine.prepare(crop))
            results[k] = [engine.process(f, i / 25) for i, f in enumerate(faces)]
            engine.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(results) == 4
    for frames in results.values():
        for got, want in zip(frames, expected, strict=True):
            np.testing.assert_array_equal(got, want)
