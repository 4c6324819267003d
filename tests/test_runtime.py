"""Model runtimes: the backend factory, what each Paddle backend configures, and that the
compiled backends reproduce the eager (dygraph) network on a small model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest

from calibrate.errors import BackendError
from model_export.graph_export import export_graph, staged_directory
from model_export.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    TensorSpec,
    read_manifest,
    write_manifest,
)
from model_export.runtime import (
    ConfigCall,
    PaddleEnum,
    Platform,
    apply_config_options,
    auto_order,
    create_runtime,
    detect_platform,
    paddle_config_options,
)

INPUTS = (TensorSpec("image", (1, 3, 24, 24)), TensorSpec("shift", (1, 2)))
OUTPUTS = ("features", "pooled")


class SmallNet(paddle.nn.Layer):
    """Two inputs, two outputs, a conv, BN, a bilinear resize, a grid_sample and a reduction."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 6, 3, padding=1)
        self.bn = paddle.nn.BatchNorm2D(6)
        self.conv2 = paddle.nn.Conv2D(6, 4, 3, padding=1)

    def forward(self, image: Any, shift: Any) -> tuple[Any, Any]:
        h = paddle.nn.functional.relu(self.bn(self.conv(image)))
        h = paddle.nn.functional.interpolate(h, size=(12, 12), mode="bilinear",
                                             align_corners=False)
        ys, xs = paddle.meshgrid(paddle.linspace(-1.0, 1.0, 12), paddle.linspace(-1.0, 1.0, 12))
        grid = paddle.stack([xs, ys], axis=-1).unsqueeze(0) + shift.reshape([1, 1, 1, 2])
        h = paddle.nn.functional.grid_sample(h, grid, mode="bilinear", padding_mode="zeros",
                                             align_corners=True)
        out = paddle.nn.functional.sigmoid(self.conv2(h))
        return out, out.sum(axis=(2, 3))


def _make_net(seed: int = 3) -> SmallNet:
    paddle.seed(seed)
    net = SmallNet()
    # non-trivial running statistics, so eval-mode BN really transforms its input
    net.bn._mean.set_value(paddle.to_tensor(np.linspace(-0.2, 0.3, 6, dtype="float32")))
    net.bn._variance.set_value(paddle.to_tensor(np.linspace(0.5, 1.5, 6, dtype="float32")))
    net.eval()
    return net


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SmallNet]:
    net = _make_net()
    out = tmp_path_factory.mktemp("small") / "model"
    with staged_directory(out) as tmp:
        spec = export_graph(net, "small", INPUTS, OUTPUTS, tmp, onnx=True)
        write_manifest(Manifest({"small": spec}, {"note": "test"}), tmp)
    return out, net


def _inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.random((1, 3, 24, 24), dtype=np.float32),
            "shift": (rng.random((1, 2), dtype=np.float32) - 0.5) * 0.3}


def _reference(net: SmallNet, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with paddle.no_grad():
        outs = net(*[paddle.to_tensor(inputs[t.name]) for t in INPUTS])
    return {n: o.numpy() for n, o in zip(OUTPUTS, outs, strict=True)}


CPU_ONLY = Platform(paddle_version="3.2.2", onnxruntime_version="1.20.1")


# ----------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("backend", ["paddle-cpu", "onnxruntime", "dygraph"])
def test_backend_reproduces_dygraph(small_model: tuple[Path, SmallNet], backend: str) -> None:
    model_dir, net = small_model
    rt = create_runtime(model_dir, "small", backend=backend, threads=1,
                        layers={"small": _make_net()})
    assert rt.backend == backend
    assert rt.input_names == ("image", "shift")
    assert rt.output_names == OUTPUTS
    for seed in (0, 1):  # twice: the handles are reused
        x = _inputs(seed)
        got = rt.run(x)
        ref = _reference(net, x)
        assert set(got) == set(OUTPUTS)
        for name in OUTPUTS:
            assert got[name].shape == ref[name].shape
            np.testing.assert_allclose(got[name], ref[name], atol=1e-5, rtol=1e-6)
    rt.close()
    rt.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        rt.run(_inputs())


def test_paddle_handles_are_looked_up_once(small_model: tuple[Path, SmallNet],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from paddle import inference

    counts = {"get_input_handle": 0, "get_output_handle": 0}
    real_create = inference.create_predictor

    class CountingPredictor:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            attr = getattr(self._inner, name)
            if name in counts:
                def counted(*a: Any) -> Any:
                    counts[name] += 1
                    return attr(*a)
                return counted
            return attr

    monkeypatch.setattr(inference, "create_predictor",
                        lambda cfg: CountingPredictor(real_create(cfg)))
    rt = create_runtime(small_model[0], "small", backend="paddle-cpu", threads=1)
    for seed in range(4):
        rt.run(_inputs(seed))
    assert counts == {"get_input_handle": 2, "get_output_handle": 2}


def test_run_checks_names_dtypes_and_shapes(small_model: tuple[Path, SmallNet]) -> None:
    rt = create_runtime(small_model[0], "small", backend="onnxruntime", threads=1)
    x = _inputs()
    with pytest.raises(ValueError, match=r"expected inputs \['image', 'shift'\]"):
        rt.run({"image": x["image"]})
    with pytest.raises(ValueError, match=r"'image' expected float32 \[1, 3, 24, 24\], "
                                         r"got float32 \[1, 3, 20, 24\]"):
        rt.run({**x, "image": x["image"][:, :, :20]})
    with pytest.raises(ValueError, match="got float64"):
        rt.run({**x, "shift": x["shift"].astype(np.float64)})


# ----------------------------------------------------------------------- factory, errors


def test_auto_prefers_onnxruntime_on_cpu_and_says_so(small_model: tuple[Path, SmallNet],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    assert auto_order(CPU_ONLY) == ["onnxruntime", "paddle-cpu"]
    gpu = Platform(paddle_version="3.2.2", cuda_compiled=True, gpu_count=1,
                   trt_version=(8, 6, 1), onnxruntime_version="1.20.1")
    assert auto_order(gpu) == ["paddle-trt", "paddle-gpu", "onnxruntime", "paddle-cpu"]
    with caplog.at_level(logging.INFO, logger="model_export.runtime"):
        rt = create_runtime(small_model[0], "small", threads=1, platform=CPU_ONLY)
    assert rt.backend == "onnxruntime"
    assert "picked onnxruntime" in caplog.text
    assert "paddle-trt, paddle-gpu:" in caplog.text  # and why the GPU ones were skipped


def test_auto_without_onnx_file_takes_paddle_cpu(tmp_path: Path) -> None:
    with staged_directory(tmp_path / "m") as tmp:
        spec = export_graph(_make_net(), "small", INPUTS, OUTPUTS, tmp, onnx=False)
        write_manifest(Manifest({"small": spec}), tmp)
    rt = create_runtime(tmp_path / "m", "small", threads=1, platform=CPU_ONLY)
    assert rt.backend == "paddle-cpu"
    with pytest.raises(BackendError) as err:
        create_runtime(tmp_path / "m", "small", backend="onnxruntime", platform=CPU_ONLY)
    msg = str(err.value)
    assert "onnxruntime: graph 'small' has no .onnx file" in msg
    assert "usable here: paddle-cpu" in msg


def test_trt_on_this_cpu_build_is_one_clear_error(small_model: tuple[Path, SmallNet]) -> None:
    plat = detect_platform()
    if plat.has_gpu:
        pytest.skip("this machine has a CUDA build of Paddle and a GPU")
    with pytest.raises(BackendError) as err:
        create_runtime(small_model[0], "small", backend="paddle-trt", precision="fp16")
    msg = str(err.value)
    assert msg.startswith("no runtime for graph 'small' (backend paddle-trt, precision fp16)")
    assert "paddle-trt: " in msg
    assert ("CPU build" in msg) or ("no CUDA device" in msg)
    assert "onnxruntime" not in msg.split("tried", 1)[1].split("usable here")[0]


def test_error_lists_every_backend_tried(small_model: tuple[Path, SmallNet]) -> None:
    broken = Platform(paddle_version=None, paddle_error="paddlepaddle is not importable (x)",
                      onnxruntime_version=None, onnxruntime_error="onnxruntime is not installed")
    with pytest.raises(BackendError) as err:
        create_runtime(small_model[0], "small", platform=broken)
    msg = str(err.value)
    for part in ("paddle-trt, paddle-gpu: paddlepaddle is not importable",
                 "onnxruntime: onnxruntime is not installed",
                 "paddle-cpu: paddlepaddle is not importable"):
        assert part in msg
    # precision nobody here offers: every candidate says why
    with pytest.raises(BackendError) as err:
        create_runtime(small_model[0], "small", precision="fp16", platform=CPU_ONLY)
    msg = str(err.value)
    assert "onnxruntime: precision fp16 not offered" in msg
    assert "paddle-cpu: precision fp16 not offered on the CPU" in msg
    with pytest.raises(BackendError, match="unknown backend 'cuda'"):
        create_runtime(small_model[0], "small", backend="cuda")
    with pytest.raises(BackendError, match="dygraph: needs the network's Paddle layers"):
        create_runtime(small_model[0], "small", backend="dygraph")


def test_backend_failure_at_load_is_reported_not_hidden(small_model: tuple[Path, SmallNet],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("simulated session failure")

    monkeypatch.setattr(onnxruntime, "InferenceSession", boom)
    with pytest.raises(BackendError, match="onnxruntime: failed to load: RuntimeError: "
                                           "simulated session failure"):
        create_runtime(small_model[0], "small", backend="onnxruntime", platform=CPU_ONLY)
    rt = create_runtime(small_model[0], "small", threads=1, platform=CPU_ONLY)
    assert rt.backend == "paddle-cpu"  # auto moves on, and logs why


# ----------------------------------------------------------------------- Paddle configuration


def _methods(calls: list[ConfigCall]) -> list[str]:
    return [c.method for c in calls]


def _call(calls: list[ConfigCall], method: str) -> ConfigCall:
    (found,) = [c for c in calls if c.method == method]
    return found


def test_cpu_config_sets_onednn_and_threads() -> None:
    calls = paddle_config_options("paddle-cpu", threads=3)
    assert _methods(calls) == ["disable_glog_info", "switch_ir_optim", "enable_mkldnn",
                               "set_cpu_math_library_num_threads"]
    assert _call(calls, "set_cpu_math_library_num_threads").args == (3,)
    bf16 = paddle_config_options("paddle-cpu", threads=2, precision="bf16")
    assert "enable_mkldnn_bfloat16" in _methods(bf16)
    with pytest.raises(ValueError, match="expected fp32 or bf16"):
        paddle_config_options("paddle-cpu", precision="fp16")
    for backend in ("paddle-cpu", "paddle-gpu", "paddle-trt"):
        assert "enable_memory_optim" not in _methods(paddle_config_options(backend))


def test_gpu_config_sets_device_and_precision() -> None:
    calls = paddle_config_options("paddle-gpu", device_id=1, precision="fp16")
    gpu = _call(calls, "enable_use_gpu")
    assert gpu.args == (256, 1)
    assert gpu.kwargs["precision_mode"] == PaddleEnum("Half")
    assert "enable_mkldnn" not in _methods(calls)
    assert "enable_tensorrt_engine" not in _methods(calls)
    fp32 = _call(paddle_config_options("paddle-gpu"), "enable_use_gpu")
    assert fp32.kwargs["precision_mode"] == PaddleEnum("Float32")


def test_trt_config_sets_fp16_cache_and_shape_ranges(tmp_path: Path) -> None:
    static = [TensorSpec("image", (1, 3, 256, 256))]
    calls = paddle_config_options("paddle-trt", precision="fp16", cache_dir=tmp_path / "c",
                                  inputs=static)
    trt = _call(calls, "enable_tensorrt_engine")
    assert trt.kwargs["precision_mode"] == PaddleEnum("Half")
    assert trt.kwargs["use_static"] is True and trt.kwargs["use_calib_mode"] is False
    assert _call(calls, "enable_use_gpu").kwargs["precision_mode"] == PaddleEnum("Float32")
    assert _call(calls, "set_optim_cache_dir").args == (str(tmp_path / "c"),)
    assert "set_trt_dynamic_shape_info" not in _methods(calls)  # static shapes need none

    dynamic = [TensorSpec("image", (-1, 3, 256, 256)), TensorSpec("kp", (-1, 10, 2))]
    calls = paddle_config_options("paddle-trt", inputs=dynamic, max_batch=4)
    lo, hi, opt = _call(calls, "set_trt_dynamic_shape_info").args
    assert lo == {"image": [1, 3, 256, 256], "kp": [1, 10, 2]}
    assert hi == {"image": [4, 3, 256, 256], "kp": [4, 10, 2]}
    assert opt == lo
    assert _call(calls, "enable_tensorrt_engine").kwargs["max_batch_size"] == 4

    shape_file = tmp_path / "animator.shapes.pbtxt"
    shape_file.write_text("tuned")
    calls = paddle_config_options("paddle-trt", inputs=dynamic, shape_file=shape_file)
    assert _call(calls, "enable_tuned_tensorrt_dynamic_shape").args == (str(shape_file), True)
    assert "set_trt_dynamic_shape_info" not in _methods(calls)

    tune = paddle_config_options("paddle-trt", shape_file=shape_file, collect_shapes=True)
    assert "enable_tensorrt_engine" not in _methods(tune)
    assert _call(tune, "collect_shape_range_info").args == (str(shape_file),)


def test_apply_config_options_calls_a_config_object() -> None:
    class FakeConfig:
        def __init__(self) -> None:
            self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: self.calls.append((name, a, k))

    cfg = FakeConfig()
    calls = paddle_config_options("paddle-trt", precision="fp16", cache_dir="cache")
    apply_config_options(cfg, calls, resolve=lambda v: f"<{v.name}>"
                         if isinstance(v, PaddleEnum) else v)
    names = [c[0] for c in cfg.calls]
    assert names == ["disable_glog_info", "switch_ir_optim", "enable_use_gpu",
                     "enable_tensorrt_engine", "set_optim_cache_dir"]
    assert cfg.calls[3][2]["precision_mode"] == "<Half>"
    assert cfg.calls[2][1] == (256, 0)

    # the default resolver gives Paddle's real enum
    from paddle import inference

    cfg2 = FakeConfig()
    apply_config_options(cfg2, [ConfigCall("enable_use_gpu", (1, 0),
                                           {"precision_mode": PaddleEnum("Half")})])
    assert cfg2.calls[0][2]["precision_mode"] == inference.PrecisionType.Half


# ----------------------------------------------------------------------- manifest checks


def test_manifest_mismatch_is_a_clear_error(small_model: tuple[Path, SmallNet],
                                            tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_model[0], copy)
    assert read_manifest(copy).graph("small").input_names == ("image", "shift")
    with pytest.raises(ManifestError, match="no graph 'kp_detector'; expected one of small"):
        create_runtime(copy, "kp_detector")

    params = copy / "small.pdiparams"
    params.write_bytes(params.read_bytes()[:-8])
    with pytest.raises(ManifestError, match="size does not match the manifest"):
        create_runtime(copy, "small")

    params.unlink()
    with pytest.raises(ManifestError, match=r"small\.pdiparams: missing"):
        read_manifest(copy)

    data = json.loads((small_model[0] / MANIFEST_NAME).read_text())
    data["format_version"] = 99
    shutil.rmtree(copy)
    shutil.copytree(small_model[0], copy)
    (copy / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="format_version 99 is not supported"):
        read_manifest(copy)

    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        read_manifest(tmp_path)


def test_manifest_input_names_must_match_the_program(small_model: tuple[Path, SmallNet],
                                                     tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "renamed"
    shutil.copytree(small_model[0], copy)
    data = json.loads((copy / MANIFEST_NAME).read_text())
    data["graphs"]["small"]["inputs"][0]["name"] = "portrait"
    (copy / MANIFEST_NAME).write_text(json.dumps(data))
    for backend in ("paddle-cpu", "onnxruntime"):
        with pytest.raises(ManifestError, match=r"do not match the manifest's \['portrait'"):
            create_runtime(copy, "small", backend=backend, threads=1)


def test_staged_directory_refuses_a_foreign_folder(tmp_path: Path) -> None:
    from model_export.graph_export import ExportError

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "me.jpg").write_bytes(b"x")
    with pytest.raises(ExportError, match=r"not empty and holds no manifest\.json"), \
            staged_directory(tmp_path / "photos"):
        pass
    assert (tmp_path / "photos" / "me.jpg").read_bytes() == b"x"
    with pytest.raises(KeyError), staged_directory(tmp_path / "new") as tmp:
        (tmp / "half").write_text("x")
        raise KeyError("interrupted")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]
