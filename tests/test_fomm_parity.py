"""Numerical parity of our FOMM with PaddleGAN and first-order-model on the tiny fixtures.

Protocol (../shared/reference/README.md): tiny config, seeded weights, eval mode; the source
and each driving frame run with batch 1 and the results are stacked; kp_driving_initial is
driving frame 0; normalize_kp modes rel / abs / relnoadapt; generator for rel and abs;
``dense_<mode>_deformation`` from the generator's dense motion network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest

from calibrate.keypoints import Keypoints, adapt_movement_scale, normalize_kp
from model_export.fomm import FommConfig, build_networks, load_state
from model_export.fomm.generator import BORDER_BLUR_TAPS, border_blend_mask
from model_export.fomm.modules import gaussian_taps

MODES = {"rel": {"relative": True, "adapt_scale": True},
         "abs": {"relative": False, "adapt_scale": False},
         "relnoadapt": {"relative": True, "adapt_scale": False}}
GEN_KEYS = ("prediction", "mask", "occlusion_map", "deformed", "sparse_deformed")

PADDLEGAN_KEYS = [
    "kp_source_value", "kp_source_jacobian", "kp_driving_value", "kp_driving_jacobian",
    "adapt_movement_scale",
    *(f"kpnorm_{m}_{q}" for m in MODES for q in ("value", "jacobian")),
    *(f"dense_{m}_deformation" for m in ("rel", "abs")),
    *(f"gen_rel_{k}" for k in GEN_KEYS),
    *(f"gen_abs_{k}" for k in ("prediction", "mask", "occlusion_map")),
]
INFERENCE_KEYS = [f"gen_{m}_{k}" for m in ("rel", "abs") for k in ("prediction", "occlusion_map")]


def _tolerance(key: str) -> float:
    return 1e-3 if key.endswith("deformed") else 1e-4


def _run(config: FommConfig, weights: dict[str, Any], cases: Any,
         inference: bool) -> dict[str, np.ndarray]:
    """Every quantity of the protocol, computed by our implementation."""
    kp_detector, generator = build_networks(config, inference=inference)
    load_state(kp_detector, generator, weights)
    source = paddle.to_tensor(cases["input__source"])
    driving = cases["input__driving"]
    out: dict[str, Any] = {}
    with paddle.no_grad():
        ks = {k: v.numpy() for k, v in kp_detector(source).items()}
        frames = [{k: v.numpy() for k, v in kp_detector(paddle.to_tensor(driving[i:i + 1])).items()}
                  for i in range(len(driving))]
        out["kp_source_value"], out["kp_source_jacobian"] = ks["value"], ks["jacobian"]
        out["kp_driving_value"] = np.concatenate([f["value"] for f in frames])
        out["kp_driving_jacobian"] = np.concatenate([f["jacobian"] for f in frames])
        kp_source = Keypoints(ks["value"], ks["jacobian"])
        initial = Keypoints(frames[0]["value"], frames[0]["jacobian"])
        out["adapt_movement_scale"] = np.float64(adapt_movement_scale(ks["value"],
                                                                      frames[0]["value"]))
        source_kp_t = {k: paddle.to_tensor(v) for k, v in ks.items()}
        for mode, flags in MODES.items():
            norm = [normalize_kp(kp_source, Keypoints(f["value"], f["jacobian"]), initial,
                                 **flags) for f in frames]
            out[f"kpnorm_{mode}_value"] = np.concatenate([n.value for n in norm])
            jacobians = [n.jacobian for n in norm if n.jacobian is not None]
            out[f"kpnorm_{mode}_jacobian"] = np.concatenate(jacobians)
            if mode == "relnoadapt":
                continue
            gen_frames, dense_frames = [], []
            for n, jac in zip(norm, jacobians, strict=True):
                kp_norm = {"value": paddle.to_tensor(n.value), "jacobian": paddle.to_tensor(jac)}
                gen_out = generator(source, kp_driving=kp_norm, kp_source=source_kp_t)
                gen_frames.append({k: v.numpy() for k, v in gen_out.items()})
                dense = generator.dense_motion_network(source_image=source, kp_driving=kp_norm,
                                                       kp_source=source_kp_t)
                dense_frames.append(dense["deformation"].numpy())
            for key in GEN_KEYS:
                out[f"gen_{mode}_{key}"] = np.concatenate([g[key] for g in gen_frames])
            out[f"dense_{mode}_deformation"] = np.concatenate(dense_frames)
    return out


@pytest.fixture(scope="module")
def cases(reference_dir: Path) -> Any:
    with np.load(reference_dir / "parity_tiny_cases.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def tiny_config(reference_dir: Path) -> FommConfig:
    doc = json.loads((reference_dir / "parity_tiny_config.json").read_text())
    return FommConfig.from_yaml_dict(doc["paddlegan_layout"])


@pytest.fixture(scope="module")
def tiny_weights(reference_dir: Path) -> dict[str, Any]:
    return paddle.load(str(reference_dir / "parity_tiny_paddle.pdparams"), return_numpy=True)


@pytest.fixture(scope="module")
def ours(tiny_config: FommConfig, tiny_weights: dict[str, Any], cases: Any) -> dict[str, Any]:
    return _run(tiny_config, tiny_weights, cases, inference=False)


@pytest.fixture(scope="module")
def ours_inference(tiny_config: FommConfig, tiny_weights: dict[str, Any],
                   cases: Any) -> dict[str, Any]:
    return _run(tiny_config, tiny_weights, cases, inference=True)


@pytest.mark.fixtures
def test_protocol_covers_every_reference_array(cases: Any) -> None:
    assert {k.split("__", 1)[1] for k in cases if k.startswith("paddlegan__")} == \
        set(PADDLEGAN_KEYS)
    assert {k.split("__", 1)[1] for k in cases if k.startswith("paddlegan_inference__")} == \
        set(INFERENCE_KEYS)


@pytest.mark.parametrize("key", PADDLEGAN_KEYS)
@pytest.mark.fixtures
def test_matches_paddlegan(ours: dict[str, Any], cases: Any, key: str) -> None:
    want = cases[f"paddlegan__{key}"]
    assert ours[key].shape == want.shape
    np.testing.assert_allclose(ours[key], want, rtol=0, atol=_tolerance(key))


@pytest.mark.parametrize("key", INFERENCE_KEYS)
@pytest.mark.fixtures
def test_matches_paddlegan_inference_mode(ours_inference: dict[str, Any], cases: Any,
                                          key: str) -> None:
    want = cases[f"paddlegan_inference__{key}"]
    assert ours_inference[key].shape == want.shape
    np.testing.assert_allclose(ours_inference[key], want, rtol=0, atol=_tolerance(key))


@pytest.mark.parametrize("key", PADDLEGAN_KEYS)
@pytest.mark.fixtures
def test_matches_original_first_order_model(ours: dict[str, Any], cases: Any, key: str) -> None:
    want = cases[f"fomtorch__{key}"]
    np.testing.assert_allclose(ours[key], want, rtol=0, atol=_tolerance(key))
    np.testing.assert_allclose(cases[f"paddlegan__{key}"], want, rtol=0, atol=_tolerance(key))


@pytest.mark.fixtures
def test_inference_occlusion_border_is_one(ours_inference: dict[str, Any],
                                           ours: dict[str, Any]) -> None:
    occ = ours_inference["gen_rel_occlusion_map"]
    border = np.ones(occ.shape[2:], bool)
    border[5:-5, 5:-5] = False
    assert np.all(occ[:, :, border] == 1.0)
    assert np.all(ours["gen_rel_occlusion_map"][:, :, border] < 1.0)
    np.testing.assert_array_equal(occ[:, :, ~border], ours["gen_rel_occlusion_map"][:, :, ~border])


@pytest.mark.parametrize("mode", ["rel", "abs"])
@pytest.mark.fixtures
def test_controls_differ(ours: dict[str, Any], ours_inference: dict[str, Any], cases: Any,
                         mode: str) -> None:
    """The fixtures can tell the border mode and the grid_sample convention apart."""
    key = f"gen_{mode}_prediction"
    assert np.abs(ours_inference[key] - ours[key]).max() > 1e-2
    assert np.abs(cases[f"paddlegan_inference__{key}"] - cases[f"paddlegan__{key}"]).max() > 1e-2
    assert np.abs(cases[f"fomtorch_unpatched__{key}"] - ours[key]).max() > 1e-2


@pytest.mark.fixtures
def test_batched_run_matches_batch_one(tiny_config: FommConfig, tiny_weights: dict[str, Any],
                                       cases: Any, ours_inference: dict[str, Any]) -> None:
    kp_detector, generator = build_networks(tiny_config, inference=True)
    load_state(kp_detector, generator, tiny_weights)
    n = len(cases["input__driving"])
    source = paddle.to_tensor(np.repeat(cases["input__source"], n, axis=0))
    with paddle.no_grad():
        kd = kp_detector(paddle.to_tensor(cases["input__driving"]))
        ks = kp_detector(source)
        kp_norm = {"value": paddle.to_tensor(ours_inference["kpnorm_rel_value"]),
                   "jacobian": paddle.to_tensor(ours_inference["kpnorm_rel_jacobian"])}
        out = generator(source, kp_driving=kp_norm, kp_source=ks)
    np.testing.assert_allclose(kd["value"].numpy(), ours_inference["kp_driving_value"], atol=1e-6)
    np.testing.assert_allclose(kd["jacobian"].numpy(), ours_inference["kp_driving_jacobian"],
                               atol=1e-6)
    np.testing.assert_allclose(out["prediction"].numpy(), ours_inference["gen_rel_prediction"],
                               atol=1e-5)


@pytest.mark.parametrize("size", [(32, 32), (64, 48), (256, 256)])
def test_border_blend_mask_equals_opencv(size: tuple[int, int]) -> None:
    cv2 = pytest.importorskip("cv2")
    h, w = size
    box = np.zeros((h, w), np.float32)
    box[5:h - 5, 5:w - 5] = 1.0
    want = cv2.GaussianBlur(box, (9, 9), 0, borderType=cv2.BORDER_ISOLATED)
    got = border_blend_mask(h, w).numpy()[0, :, :, 0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    # OpenCV's fixed 9-tap table, which is not the sigma-1.7 Gaussian the formula gives.
    sigma_taps = gaussian_taps(9, 1.7)
    assert max(abs(a - b) for a, b in zip(BORDER_BLUR_TAPS, sigma_taps, strict=True)) > 1e-4
