"""FOMM network layout: state-dict keys/order/shapes/dtypes against the reference manifests,
config parsing in both YAML layouts, and strict weight loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest

from calibrate.errors import InputError, WeightsError
from model_export.fomm import (
    FommConfig,
    GeneratorConfig,
    KPDetectorConfig,
    build_networks,
    load_state,
)


def _layout(layer: Any) -> list[tuple[str, list[int], str]]:
    return [(k, list(v.shape), str(v.dtype).replace("paddle.", ""))
            for k, v in layer.state_dict().items()]


def _manifest(path: Path, net: str) -> list[tuple[str, list[int], str]]:
    entries = json.loads(path.read_text())[net]
    return [(e["key"], e["shape"], e["dtype"]) for e in entries]


@pytest.fixture(scope="module")
def vox_nets() -> tuple[Any, Any]:
    return build_networks()


@pytest.fixture(scope="module")
def tiny_config_json(reference_dir: Path) -> dict[str, Any]:
    return json.loads((reference_dir / "parity_tiny_config.json").read_text())


@pytest.fixture(scope="module")
def tiny_weights(reference_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    return paddle.load(str(reference_dir / "parity_tiny_paddle.pdparams"), return_numpy=True)


# --- layout --------------------------------------------------------------------------------

@pytest.mark.parametrize("net", ["kp_detector", "generator"])
@pytest.mark.fixtures
def test_vox256_state_dict_matches_manifest(vox_nets: tuple[Any, Any], reference_dir: Path,
                                            net: str) -> None:
    layer = vox_nets[0] if net == "kp_detector" else vox_nets[1]
    expected = _manifest(reference_dir / "fomm_vox256_paddle_keys.json", net)
    got = _layout(layer)
    assert [k for k, _, _ in got] == [k for k, _, _ in expected]  # keys and order
    assert got == expected  # shapes and dtypes too


@pytest.mark.fixtures
def test_vox256_counts_match_manifest(vox_nets: tuple[Any, Any], reference_dir: Path) -> None:
    counts = json.loads((reference_dir / "fomm_vox256_paddle_keys.json").read_text())["counts"]
    kp, gen = vox_nets
    for layer, name in ((gen, "generator"), (kp, "kp_detector")):
        sd = layer.state_dict()
        assert len(sd) == counts[f"{name}_entries"]
        assert sum(int(np.prod(v.shape)) for v in sd.values()) == counts[f"{name}_numel"]


def test_anti_alias_buffers_are_in_state_dict(vox_nets: tuple[Any, Any]) -> None:
    kp, gen = vox_nets
    k = kp.state_dict()["down.weight"].numpy()
    g = gen.state_dict()["dense_motion_network.down.weight"].numpy()
    assert k.shape == (3, 1, 13, 13)
    np.testing.assert_allclose(k.sum(axis=(1, 2, 3)), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(k, g)
    assert np.argmax(k[0, 0]) == 6 * 13 + 6  # centred Gaussian


@pytest.mark.fixtures
def test_vox512_manifest_equals_vox256(reference_dir: Path) -> None:
    for net in ("generator", "kp_detector"):
        assert (_manifest(reference_dir / "fomm_vox512_paddle_keys.json", net)
                == _manifest(reference_dir / "fomm_vox256_paddle_keys.json", net))


@pytest.mark.parametrize("layout", ["paddlegan_layout", "first_order_model_layout"])
@pytest.mark.fixtures
def test_tiny_config_builds_and_matches_fixture_weights(
        tiny_config_json: dict[str, Any], tiny_weights: dict[str, dict[str, np.ndarray]],
        layout: str) -> None:
    config = FommConfig.from_yaml_dict(tiny_config_json[layout])
    assert config.kp_detector.block_expansion == 8
    assert config.generator.dense_motion.max_features == 32
    kp, gen = build_networks(config)
    for layer, name in ((kp, "kp_detector"), (gen, "generator")):
        got = [(k, s) for k, s, _ in _layout(layer)]
        want = [(k, list(v.shape)) for k, v in tiny_weights[name].items()]
        assert got == want


# --- config --------------------------------------------------------------------------------

def _vox_yaml_dicts(reference_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    ref = json.loads((reference_dir / "fomm_config_vox256.json").read_text())
    pg = ref["paddlegan"]
    fom = ref["first_order_model"]
    paddlegan = {
        "epochs": 100,
        "model": {
            "name": "FirstOrderModel",
            "common_params": pg["common_params"],
            "generator": {"name": "FirstOrderGenerator",
                          "kp_detector_cfg": pg["kp_detector_params"],
                          "generator_cfg": pg["generator_params"]},
            "discriminator": {"name": "FirstOrderDiscriminator",
                              "discriminator_cfg": pg["discriminator_cfg"]},
            "train_params": pg["train_params"],
        },
        "animate_params": pg["animate_params"],
    }
    first_order = {
        "model_params": {"common_params": fom["common_params"],
                         "kp_detector_params": fom["kp_detector_params"],
                         "generator_params": fom["generator_params"],
                         "discriminator_params": fom["discriminator_params"]},
        "train_params": fom["train_params"],
        "animate_params": fom["animate_params"],
    }
    return paddlegan, first_order


@pytest.mark.fixtures
def test_vox_yaml_layouts_give_the_defaults(reference_dir: Path) -> None:
    paddlegan, first_order = _vox_yaml_dicts(reference_dir)
    assert FommConfig.from_yaml_dict(paddlegan) == FommConfig.vox256()
    assert FommConfig.from_yaml_dict(first_order) == FommConfig.vox256()
    assert FommConfig.vox256() == FommConfig()


def test_config_changes_are_read() -> None:
    d = {"model_params": {
        "common_params": {"num_kp": 15, "num_channels": 3, "estimate_jacobian": False},
        "kp_detector_params": {"temperature": 0.2, "scale_factor": 0.5},
        "generator_params": {"num_bottleneck_blocks": 3, "dense_motion_params": {"num_blocks": 4}},
    }}
    cfg = FommConfig.from_yaml_dict(d)
    assert cfg.num_kp == 15 and cfg.estimate_jacobian is False
    assert cfg.kp_detector == KPDetectorConfig(temperature=0.2, scale_factor=0.5)
    assert cfg.generator.num_bottleneck_blocks == 3
    assert cfg.generator.dense_motion.num_blocks == 4
    assert cfg.generator.max_features == GeneratorConfig().max_features


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["model_params"]["kp_detector_params"].update(tempreature=0.1),
     "model_params.kp_detector_params.tempreature"),
    (lambda d: d["model_params"]["generator_params"]["dense_motion_params"].update(foo=1),
     "dense_motion_params.foo"),
    (lambda d: d.update(surprise={}), "surprise"),
    (lambda d: d["model_params"]["common_params"].update(num_kp="10"), "num_kp"),
    (lambda d: d["model_params"]["common_params"].update(estimate_jacobian=1), "estimate_jac"),
    (lambda d: d["model_params"]["kp_detector_params"].update(num_blocks=0), "positive"),
    (lambda d: d["model_params"]["kp_detector_params"].update(mobile_net=True), "mobile"),
    (lambda d: d["model_params"].pop("generator_params"), "generator_params"),
    (lambda d: d.update(model={}), "exactly one"),
])
def test_bad_config_raises_input_error(mutate: Any, match: str) -> None:
    d: dict[str, Any] = {"model_params": {
        "common_params": {"num_kp": 10, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1},
        "generator_params": {"block_expansion": 64, "dense_motion_params": {}},
    }}
    mutate(d)
    with pytest.raises(InputError, match=match):
        FommConfig.from_yaml_dict(d)


def test_no_model_section_names_both_layouts() -> None:
    with pytest.raises(InputError, match=r"model_params.*model"):
        FommConfig.from_yaml_dict({"dataset_params": {}})


def test_no_jacobian_no_occlusion_builds_and_runs() -> None:
    cfg = FommConfig(estimate_jacobian=False,
                     kp_detector=KPDetectorConfig(block_expansion=4, max_features=16),
                     generator=GeneratorConfig(block_expansion=4, max_features=16,
                                               num_bottleneck_blocks=1,
                                               estimate_occlusion_map=False))
    kp, gen = build_networks(cfg)
    assert not any(k.startswith("jacobian") for k in kp.state_dict())
    assert not any("occlusion" in k for k in gen.state_dict())
    x = paddle.rand([1, 3, 128, 128])
    with paddle.no_grad():
        out_kp = kp(x)
        out = gen(x, kp_driving=out_kp, kp_source=out_kp)
    assert "jacobian" not in out_kp
    assert "occlusion_map" not in out
    assert out["prediction"].shape == [1, 3, 128, 128]


# --- load_state ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_nets(tiny_config_json: dict[str, Any]) -> tuple[Any, Any]:
    return build_networks(FommConfig.from_yaml_dict(tiny_config_json["paddlegan_layout"]))


def _copy(weights: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    return {net: dict(w) for net, w in weights.items()}


@pytest.mark.fixtures
def test_load_state_sets_every_tensor(tiny_nets: tuple[Any, Any],
                                      tiny_weights: dict[str, dict[str, np.ndarray]]) -> None:
    kp, gen = tiny_nets
    load_state(kp, gen, tiny_weights)
    for layer, name in ((kp, "kp_detector"), (gen, "generator")):
        for key, value in layer.state_dict().items():
            np.testing.assert_array_equal(value.numpy(), tiny_weights[name][key], err_msg=key)


@pytest.mark.fixtures
def test_load_state_rejects_bad_keys_and_shapes(
        tiny_nets: tuple[Any, Any], tiny_weights: dict[str, dict[str, np.ndarray]]) -> None:
    kp, gen = tiny_nets
    bad = _copy(tiny_weights)
    del bad["generator"]["final.bias"]
    bad["generator"]["final.extra"] = np.zeros(3, np.float32)
    bad["kp_detector"]["kp.weight"] = np.zeros((10, 11, 5, 5), np.float32)
    before = kp.state_dict()["kp.bias"].numpy().copy()
    bad["kp_detector"]["kp.bias"] = before + 1  # a valid key: must NOT be set on failure
    with pytest.raises(WeightsError) as info:
        load_state(kp, gen, bad)
    msg = str(info.value)
    assert "missing: final.bias" in msg
    assert "unexpected: final.extra" in msg
    assert "kp.weight [10, 11, 5, 5] (expected [10, 11, 7, 7])" in msg
    np.testing.assert_array_equal(kp.state_dict()["kp.bias"].numpy(), before)


@pytest.mark.fixtures
def test_load_state_rejects_missing_sections(tiny_nets: tuple[Any, Any]) -> None:
    with pytest.raises(WeightsError, match="'generator'"):
        load_state(*tiny_nets, {"kp_detector": {}})


@pytest.mark.fixtures
def test_load_state_tolerates_missing_gaussian_buffers(
        tiny_nets: tuple[Any, Any], tiny_weights: dict[str, dict[str, np.ndarray]]) -> None:
    kp, gen = tiny_nets
    partial = _copy(tiny_weights)
    kernel = partial["kp_detector"].pop("down.weight")
    partial["generator"].pop("dense_motion_network.down.weight")
    load_state(kp, gen, partial)
    # The built-in kernel equals the one PaddleGAN saved.
    np.testing.assert_allclose(kp.state_dict()["down.weight"].numpy(), kernel, atol=1e-8)
