"""FOMM split-graph export: every backend available here reproduces the dygraph networks on the
tiny parity weights (and PaddleGAN's own outputs), the manifest is checked at load, and the
vox-256 architecture round-trips with random weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest

from calibrate.keypoints import Keypoints, normalize_kp
from live.cli.main import main
from model_export.export import export_fomm, load_manifest
from model_export.fomm import build_networks, load_state
from model_export.fomm_runtime import FommRuntime
from model_export.manifest import MANIFEST_NAME, ManifestError
from model_export.runtime import detect_platform

ATOL = 1e-4
BACKENDS = ["paddle-cpu", "onnxruntime", "dygraph"]


def _runtime(tiny: dict[str, Any], model: Path, backend: str) -> FommRuntime:
    if backend == "dygraph":
        return FommRuntime.reference(tiny["weights"], config=tiny["config"], image_size=128)
    return FommRuntime(model, backend=backend, threads=1)


def _dygraph(tiny: dict[str, Any]) -> tuple[Any, Any]:
    kp, gen = build_networks(tiny["config"], inference=True)
    load_state(kp, gen, tiny["state"])
    return kp, gen


@pytest.mark.fixtures
def test_manifest_records_the_export(tiny: dict[str, Any], tiny_model: Path) -> None:
    from model_export.weights import sha256_of

    m = load_manifest(tiny_model, weights_sha256=sha256_of(tiny["weights"]))
    info = m.info
    assert info["model"] == "fomm" and info["image_size"] == 128 and info["num_kp"] == 10
    assert info["precision"] == "fp32" and info["generator_mode"] == "inference"
    assert info["paddle_version"] == paddle.__version__
    assert info["mimicam_version"]
    assert info["config"]["generator"]["block_expansion"] == 8
    assert info["onnx"]["opset"] >= 11
    assert set(m.graphs) == {"kp_detector", "source_encoder", "animator"}
    assert m.graph("kp_detector").input_names == ("image",)
    assert [t.shape for t in m.graph("kp_detector").outputs] == [(1, 10, 2), (1, 10, 2, 2)]
    enc = {t.name: t.shape for t in m.graph("source_encoder").outputs}
    assert enc == {"source_features": (1, 32, 32, 32), "source_small": (1, 3, 32, 32)}
    anim = m.graph("animator")
    assert anim.input_names == ("source_features", "source_small", "kp_source_value",
                                "kp_source_jacobian", "kp_driving_value", "kp_driving_jacobian")
    assert anim.outputs[0].shape == (1, 3, 128, 128)
    for spec in m.graphs.values():
        assert sorted(spec.files) == ["json", "onnx", "pdiparams"]
        for fname in spec.files.values():
            assert (tiny_model / fname).stat().st_size > 0
    assert not [p for p in tiny_model.parent.iterdir() if p.name.startswith(".fomm-tiny")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.fixtures
def test_backend_reproduces_dygraph_full_forward(tiny: dict[str, Any], tiny_model: Path,
                                                 backend: str) -> None:
    kp_net, gen = _dygraph(tiny)
    src = tiny["cases"]["input__source"]
    driving = tiny["cases"]["input__driving"]
    with _runtime(tiny, tiny_model, backend) as fomm:
        assert set(fomm.backends.values()) == {backend}
        state = fomm.encode_source(src)
        with paddle.no_grad():
            src_t = paddle.to_tensor(src)
            ref_ks = kp_net(src_t)
        np.testing.assert_allclose(state.kp.value, ref_ks["value"].numpy()[0], atol=ATOL)
        np.testing.assert_allclose(state.kp.jacobian, ref_ks["jacobian"].numpy()[0], atol=ATOL)
        kp0 = fomm.detect(driving[:1])
        for i in range(len(driving)):
            kp_d = fomm.detect(driving[i:i + 1])
            with paddle.no_grad():
                ref_kd = kp_net(paddle.to_tensor(driving[i:i + 1]))
            np.testing.assert_allclose(kp_d.value, ref_kd["value"].numpy()[0], atol=ATOL)
            np.testing.assert_allclose(kp_d.jacobian, ref_kd["jacobian"].numpy()[0], atol=ATOL)
            # a full relative animate step: normalise, then source state + animator ...
            kp_n = normalize_kp(state.kp, kp_d, kp0, relative=True, adapt_scale=True)
            pred = fomm.animate_array(state, kp_n)
            # ... against the dygraph generator's full forward on the same keypoints
            with paddle.no_grad():
                ref = gen(src_t, kp_driving={"value": paddle.to_tensor(kp_n.value[None]),
                                             "jacobian": paddle.to_tensor(kp_n.jacobian[None])},
                          kp_source=ref_ks)["prediction"].numpy()
            assert pred.shape == ref.shape == (1, 3, 128, 128)
            np.testing.assert_allclose(pred, ref, atol=ATOL)
            # and against PaddleGAN's predictor-mode output (same weights, same protocol)
            np.testing.assert_allclose(
                pred[0], tiny["cases"]["paddlegan_inference__gen_rel_prediction"][i], atol=ATOL)
            assert float(np.abs(pred - src).max()) > 1e-3 or i in (0, 3)  # it really moves
        # absolute mode passes the driving keypoints through
        kp_abs = normalize_kp(state.kp, fomm.detect(driving[1:2]), kp0, relative=False)
        np.testing.assert_allclose(fomm.animate_array(state, kp_abs)[0],
                                   tiny["cases"]["paddlegan_inference__gen_abs_prediction"][1],
                                   atol=ATOL)
        img = fomm.animate(state, kp_abs)
        assert img.dtype == np.uint8 and img.shape == (128, 128, 3)


@pytest.mark.fixtures
def test_uint8_images_are_resized_and_scaled(tiny: dict[str, Any], tiny_model: Path) -> None:
    src = tiny["cases"]["input__source"]
    rgb = np.rint(src[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    with FommRuntime(tiny_model, backend="paddle-cpu", threads=1) as fomm:
        a = fomm.detect(rgb)
        b = fomm.detect(rgb.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255))
        np.testing.assert_array_equal(a.value, b.value)
        big = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)  # 256 px: resized to 128
        c = fomm.detect(big)
        assert float(np.abs(c.value - a.value).max()) < 0.05
        with pytest.raises(ValueError, match=r"expected an RGB uint8 \(H, W, 3\) image"):
            fomm.detect(np.zeros((128, 128), np.uint8))


@pytest.mark.fixtures
def test_manifest_mismatch_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    def variant(edit: Any) -> Path:
        d = tmp_path / f"v{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_model, d)
        data = json.loads((d / MANIFEST_NAME).read_text())
        edit(data)
        (d / MANIFEST_NAME).write_text(json.dumps(data))
        return d

    def size(d: dict[str, Any]) -> None:
        d["image_size"] = 256

    with pytest.raises(ManifestError, match=r"kp_detector input image has shape "
                                            r"\[1, 3, 128, 128\]; expected \[1, 3, 256, 256\]"):
        load_manifest(variant(size))

    def newer_paddle(d: dict[str, Any]) -> None:
        d["paddle_version"] = "3.9.0"

    with pytest.raises(ManifestError, match=r"exported with Paddle 3\.9\.0"):
        FommRuntime(variant(newer_paddle), backend="paddle-cpu")

    def no_animator(d: dict[str, Any]) -> None:
        del d["graphs"]["animator"]

    with pytest.raises(ManifestError, match="lacks graph"):
        load_manifest(variant(no_animator))

    def other_model(d: dict[str, Any]) -> None:
        d["model"] = "liveportrait"

    with pytest.raises(ManifestError, match="expected a 'fomm' model directory"):
        load_manifest(variant(other_model))

    def feature_shape(d: dict[str, Any]) -> None:
        d["graphs"]["animator"]["inputs"][0]["shape"] = [1, 64, 32, 32]

    with pytest.raises(ManifestError, match="animator input source_features"):
        load_manifest(variant(feature_shape))

    with pytest.raises(ManifestError, match="exported from other weights"):
        load_manifest(tiny_model, weights_sha256="0" * 64)


@pytest.mark.fixtures
def test_export_refuses_bad_input(tiny: dict[str, Any], tmp_path: Path) -> None:
    from calibrate.errors import InputError, WeightsError

    with pytest.raises(InputError, match="unsupported image size"):
        export_fomm(tiny["weights"], tmp_path / "m", config=tiny["config"], image_size=100)
    with pytest.raises(InputError, match="weights file not found"):
        export_fomm(tmp_path / "nope.pdparams", tmp_path / "m", config=tiny["config"])
    with pytest.raises(WeightsError):  # tiny weights do not fit the vox-256 networks
        export_fomm(tiny["weights"], tmp_path / "m")
    assert not (tmp_path / "m").exists()
    assert main(["export", "--weights", str(tmp_path / "nope.pdparams"),
                 "--out", str(tmp_path / "m")]) == 2


@pytest.mark.skipif(detect_platform().has_gpu, reason="a GPU is present")
@pytest.mark.fixtures
def test_gpu_backends_fail_clearly_on_this_machine(tiny_model: Path) -> None:
    from calibrate.errors import BackendError

    for backend in ("paddle-gpu", "paddle-trt"):
        with pytest.raises(BackendError, match=f"{backend}: this Paddle .* is a CPU build"
                                               "|no CUDA device"):
            FommRuntime(tiny_model, backend=backend, precision="fp16")


@pytest.mark.fixtures
def test_bench_reports_stages_and_agreement(tiny: dict[str, Any], tiny_model: Path) -> None:
    from live.bench.fomm import format_report, run_fomm_bench

    r = run_fomm_bench(backend="paddle-cpu", weights=tiny["weights"], model_dir=tiny_model,
                       frames=3, warmup=1, reference_frames=2, threads=1,
                       config=tiny["config"], image_size=128)
    assert r["backends"]["animator"] == "paddle-cpu" and r["architecture"] == "custom"
    assert set(r["stages"]) == {"kp_detector", "normalize", "animator"}
    assert r["per_frame"]["n"] == 3 and r["reference"]["n"] == 2
    assert r["per_frame"]["p95_ms"] >= r["per_frame"]["median_ms"] > 0
    assert r["max_abs_diff_vs_reference"] < ATOL
    g = r["gmacs"]
    assert 0 < g["per_frame_runtime"] < g["per_frame_reference"]
    assert g["source_encoder"] > 0 and g["dense_motion"] > 0
    text = format_report(r)
    assert "speed-up vs dygraph full forward" in text and "paddle-cpu" in text


@pytest.mark.slow
def test_vox256_random_weights_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "vox"
    assert main(["export", "--random-weights", "--seed", "3", "--no-onnx",
                 "--out", str(out)]) == 0
    m = load_manifest(out)
    assert m.info["weights"]["sha256"] == "random:3" and m.info["image_size"] == 256
    enc = {t.name: t.shape for t in m.graph("source_encoder").outputs}
    assert enc == {"source_features": (1, 256, 64, 64), "source_small": (1, 3, 64, 64)}
    assert m.graph("animator").outputs[0].shape == (1, 3, 256, 256)
    rng = np.random.default_rng(0)
    src = rng.random((1, 3, 256, 256), dtype=np.float32)
    drv = np.roll(src, 6, axis=3)
    ref = FommRuntime.reference(None, seed=3)
    with FommRuntime(out, backend="paddle-cpu") as fomm:
        state, ref_state = fomm.encode_source(src), ref.encode_source(src)
        assert state.features.shape == (1, 256, 64, 64)
        np.testing.assert_allclose(state.features, ref_state.features, atol=ATOL)
        kp_d = fomm.detect(drv)
        np.testing.assert_allclose(kp_d.value, ref.detect(drv).value, atol=ATOL)
        kp_n = normalize_kp(state.kp, kp_d, state.kp, relative=True)
        pred = fomm.animate_array(state, kp_n)
        assert pred.shape == (1, 3, 256, 256)
        np.testing.assert_allclose(pred, ref.animate_array(ref_state, kp_n), atol=ATOL)
    ref.close()


@pytest.mark.fixtures
def test_keypoints_packets_round_trip(tiny: dict[str, Any], tiny_model: Path) -> None:
    with FommRuntime(tiny_model, backend="onnxruntime", threads=1) as fomm:
        kp = fomm.detect(tiny["cases"]["input__driving"][2:3])
        assert isinstance(kp, Keypoints)
        assert kp.value.shape == (10, 2) and kp.jacobian is not None
        assert kp.jacobian.shape == (10, 2, 2)
        assert np.all(np.abs(kp.value) <= 1.0)
