"""Reading, checking and converting FOMM checkpoints (PaddleGAN .pdparams, torch .pth.tar)."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch_files as tf

from calibrate.errors import WeightsError
from model_export import checkpoint
from model_export.checkpoint import (
    FORMAT_PADDLE,
    FORMAT_TORCH_LEGACY,
    FORMAT_TORCH_ZIP,
    check_layout,
    convert_torch_checkpoint,
    expected_layout,
    load_checkpoint,
    open_checkpoint,
    read_checkpoint,
    write_pdparams,
)

TORCH_FIXTURES = ["parity_tiny_torch.pth.tar", "parity_tiny_torch_zipformat.pth.tar"]


@pytest.fixture(scope="module")
def tiny_config(reference_dir):
    from model_export.fomm import FommConfig

    doc = json.loads((reference_dir / "parity_tiny_config.json").read_text())
    return FommConfig.from_yaml_dict(doc["paddlegan_layout"])


@pytest.fixture(scope="module")
def fixture_state(reference_dir) -> dict[str, dict[str, np.ndarray]]:
    """The tiny PaddleGAN fixture, read with plain pickle (trusted team data)."""
    with open(reference_dir / "parity_tiny_paddle.pdparams", "rb") as f:
        raw = pickle.load(f)
    return {s: {k: v[1] for k, v in raw[s].items()} for s in ("generator", "kp_detector")}


def assert_same_state(got, want):
    assert list(got) == list(want)
    for section in want:
        assert list(got[section]) == list(want[section]), section
        for key, value in want[section].items():
            other = got[section][key]
            assert other.dtype == value.dtype and other.shape == value.shape, key
            assert other.tobytes() == value.tobytes(), key


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".part"]


# --------------------------------------------------------------------------- layout


@pytest.mark.fixtures
def test_layout_derived_from_network_equals_the_vox256_manifest(reference_dir):
    manifest = json.loads((reference_dir / "fomm_vox256_paddle_keys.json").read_text())
    layout = expected_layout()
    assert list(layout) == ["generator", "kp_detector"]
    for section in ("generator", "kp_detector"):
        want = [(e["key"], tuple(e["shape"]), e["dtype"]) for e in manifest[section]]
        assert layout[section] == want
    counts = manifest["counts"]
    assert len(layout["generator"]) == counts["generator_entries"] == 169
    assert sum(int(np.prod(s)) for _k, s, _d in layout["generator"]) == counts["generator_numel"]
    assert sum(int(np.prod(s)) for _k, s, _d in layout["kp_detector"]) == \
        counts["kp_detector_numel"]


@pytest.mark.fixtures
def test_tiny_layout_matches_the_tiny_fixture(tiny_config, fixture_state):
    layout = expected_layout(tiny_config)
    for section, entries in layout.items():
        assert [(k, tuple(v.shape), v.dtype.name) for k, v in fixture_state[section].items()] \
            == entries


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize(("name", "fmt"), [("parity_tiny_paddle.pdparams", FORMAT_PADDLE),
                                           (TORCH_FIXTURES[0], FORMAT_TORCH_LEGACY),
                                           (TORCH_FIXTURES[1], FORMAT_TORCH_ZIP)])
@pytest.mark.fixtures
def test_every_format_reads_to_the_same_arrays(reference_dir, fixture_state, name, fmt):
    ckpt = open_checkpoint(reference_dir / name)
    assert ckpt.format == fmt
    assert ckpt.top_level_keys == ("generator", "kp_detector")
    assert_same_state(ckpt.state, fixture_state)
    assert_same_state(read_checkpoint(reference_dir / name), fixture_state)


@pytest.mark.fixtures
def test_format_is_detected_by_content_not_name(reference_dir, tmp_path, fixture_state):
    disguised = tmp_path / "weights.pdparams"
    disguised.write_bytes((reference_dir / TORCH_FIXTURES[0]).read_bytes())
    assert open_checkpoint(disguised).format == FORMAT_TORCH_LEGACY
    assert_same_state(read_checkpoint(disguised), fixture_state)


@pytest.mark.parametrize("content", [b"", b"GIF89a not weights", b"\x80\x04\x95garbage"])
def test_unreadable_files_raise_weights_error(tmp_path, content):
    path = tmp_path / "bad.pdparams"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=r"unknown checkpoint format|unreadable"):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "nope.pdparams")


@pytest.mark.fixtures
def test_bare_arrays_and_extra_sections_are_accepted(tmp_path, fixture_state, tiny_config):
    # Older paddle.save wrote bare arrays; training checkpoints carry more top-level entries.
    payload = {"generator": dict(fixture_state["generator"]),
               "kp_detector": dict(fixture_state["kp_detector"]),
               "discriminator": {"x": np.zeros(3, np.float32)}, "epoch": 3}
    payload["generator"]["StructuredToParameterName@@"] = {"first.conv.weight": "conv2d_0.w_0"}
    path = tmp_path / "old.pdparams"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    ckpt = open_checkpoint(path)
    assert ckpt.top_level_keys == ("generator", "kp_detector", "discriminator", "epoch")
    assert any("StructuredToParameterName@@" in n for n in ckpt.notes)
    assert_same_state(load_checkpoint(path, tiny_config), fixture_state)


def test_malicious_pdparams_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"generator": {"a": Evil()}}, protocol=4))
    with pytest.raises(WeightsError, match=r"refusing to load.*system"):
        read_checkpoint(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- checking


@pytest.mark.fixtures
def test_load_checkpoint_accepts_all_fixtures(reference_dir, tiny_config, fixture_state):
    for name in ["parity_tiny_paddle.pdparams", *TORCH_FIXTURES]:
        assert_same_state(load_checkpoint(reference_dir / name, tiny_config), fixture_state)


@pytest.mark.fixtures
def test_fixture_is_not_a_vox256_checkpoint(reference_dir):
    with pytest.raises(WeightsError) as info:
        load_checkpoint(reference_dir / "parity_tiny_paddle.pdparams")
    message = str(info.value)
    assert "shape mismatch" in message and "missing key" in message
    assert "generator 169 keys" in message


@pytest.mark.fixtures
def test_missing_unexpected_and_misshaped_keys_are_all_listed(tmp_path, fixture_state,
                                                             tiny_config):
    state = {s: dict(v) for s, v in fixture_state.items()}
    del state["generator"]["final.bias"]
    state["kp_detector"]["extra.weight"] = np.zeros(2, np.float32)
    state["generator"]["first.conv.weight"] = np.zeros((8, 3, 5, 5), np.float32)
    path = write_pdparams(state, tmp_path / "bad.pdparams")
    with pytest.raises(WeightsError) as info:
        load_checkpoint(path, tiny_config)
    message = str(info.value)
    assert "generator: 1 missing key(s): final.bias" in message
    assert "kp_detector: 1 unexpected key(s): extra.weight" in message
    assert "first.conv.weight expected [8, 3, 7, 7] got [8, 3, 5, 5]" in message
    assert str(path) in message

    report = check_layout(state, expected_layout(tiny_config))
    assert not report.ok
    assert report.section("generator").missing == ("final.bias",)
    assert report.section("kp_detector").unexpected == ("extra.weight",)
    assert report.section("generator").shape_mismatched == (
        ("first.conv.weight", (8, 3, 7, 7), (8, 3, 5, 5)),)


@pytest.mark.fixtures
def test_long_lists_are_shortened_with_counts(fixture_state, tiny_config):
    state = {"generator": {}, "kp_detector": dict(fixture_state["kp_detector"])}
    report = check_layout(state, expected_layout(tiny_config))
    n = len(fixture_state["generator"])
    assert f"generator: {n} missing key(s)" in report.summary()
    assert f"({n - 5} more)" in report.summary()
    absent = check_layout({"kp_detector": {}}, expected_layout(tiny_config))
    assert "generator: section missing" in absent.summary()


@pytest.mark.fixtures
def test_dtypes_float_is_cast_integer_is_rejected(tmp_path, fixture_state, tiny_config, caplog):
    state = {s: dict(v) for s, v in fixture_state.items()}
    state["generator"]["final.bias"] = state["generator"]["final.bias"].astype(np.float64)
    path = write_pdparams(state, tmp_path / "f64.pdparams")
    with caplog.at_level(logging.WARNING, logger="model_export.checkpoint"):
        loaded = load_checkpoint(path, tiny_config)
    assert loaded["generator"]["final.bias"].dtype == np.float32
    np.testing.assert_array_equal(loaded["generator"]["final.bias"],
                                  fixture_state["generator"]["final.bias"])
    assert "final.bias is float64" in caplog.text

    state["generator"]["final.bias"] = np.zeros(3, np.int32)
    path = write_pdparams(state, tmp_path / "int.pdparams")
    with pytest.raises(WeightsError, match=r"final\.bias expected float32 got int32"):
        load_checkpoint(path, tiny_config)


@pytest.mark.fixtures
def test_missing_gaussian_buffers_are_recomputed(tmp_path, fixture_state, tiny_config, caplog):
    state = {s: dict(v) for s, v in fixture_state.items()}
    del state["kp_detector"]["down.weight"]
    del state["generator"]["dense_motion_network.down.weight"]
    path = write_pdparams(state, tmp_path / "nodown.pdparams")
    with caplog.at_level(logging.INFO, logger="model_export.checkpoint"):
        loaded = load_checkpoint(path, tiny_config)
    assert "kp_detector.down.weight missing; recomputed" in caplog.text
    for section, key in (("kp_detector", "down.weight"),
                         ("generator", "dense_motion_network.down.weight")):
        want = fixture_state[section][key]
        got = loaded[section][key]
        assert got.shape == want.shape == (3, 1, 13, 13) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-8)  # within a float32 ulp
        assert list(loaded[section]) == list(fixture_state[section])  # order restored


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("name", TORCH_FIXTURES)
@pytest.mark.fixtures
def test_converted_file_loads_with_paddle_and_with_our_reader(reference_dir, tmp_path,
                                                             fixture_state, tiny_config, name):
    import paddle

    out = convert_torch_checkpoint(reference_dir / name, tmp_path / "out.pdparams",
                                   tiny_config)
    assert out == tmp_path / "out.pdparams"
    assert no_temp_files(tmp_path)
    assert open_checkpoint(out).format == FORMAT_PADDLE
    assert_same_state(read_checkpoint(out), fixture_state)

    by_paddle = paddle.load(str(out), return_numpy=True)
    assert_same_state({s: by_paddle[s] for s in ("generator", "kp_detector")}, fixture_state)
    tensors = paddle.load(str(out))
    np.testing.assert_array_equal(tensors["kp_detector"]["down.weight"].numpy(),
                                  fixture_state["kp_detector"]["down.weight"])


@pytest.mark.fixtures
def test_converted_weights_drive_the_network_like_paddlegan(reference_dir, tmp_path,
                                                           tiny_config):
    import paddle

    from model_export.fomm import build_networks, load_state

    out = convert_torch_checkpoint(reference_dir / TORCH_FIXTURES[0],
                                   tmp_path / "out.pdparams", tiny_config)
    kp_detector, generator = build_networks(tiny_config, inference=False)
    load_state(kp_detector, generator, load_checkpoint(out, tiny_config))
    cases = np.load(reference_dir / "parity_tiny_cases.npz")
    with paddle.no_grad():
        kp = kp_detector(paddle.to_tensor(cases["input__source"]))
    np.testing.assert_allclose(kp["value"].numpy(), cases["paddlegan__kp_source_value"],
                               atol=1e-4)
    np.testing.assert_allclose(kp["jacobian"].numpy(), cases["paddlegan__kp_source_jacobian"],
                               atol=1e-4)


@pytest.mark.fixtures
def test_failed_conversion_writes_nothing(reference_dir, tmp_path):
    dst = tmp_path / "out.pdparams"
    with pytest.raises(WeightsError, match="does not match the FOMM network layout"):
        convert_torch_checkpoint(reference_dir / TORCH_FIXTURES[0], dst)  # tiny != vox-256
    assert list(tmp_path.iterdir()) == []


@pytest.mark.fixtures
def test_converting_a_pdparams_is_refused(reference_dir, tmp_path, tiny_config):
    with pytest.raises(WeightsError, match="already a PaddleGAN checkpoint"):
        convert_torch_checkpoint(reference_dir / "parity_tiny_paddle.pdparams",
                                 tmp_path / "x.pdparams", tiny_config)


@pytest.mark.fixtures
def test_dataparallel_prefix_is_stripped(tmp_path, fixture_state, tiny_config):
    torch_state = {}
    for section, values in fixture_state.items():
        torch_state[section] = {
            "module." + k.replace("._mean", ".running_mean").replace("._variance", ".running_var"):
            tf.tensor(v) for k, v in values.items()}
    path = tf.write_zip(tmp_path / "dp.pth.tar", torch_state)
    assert_same_state(load_checkpoint(path, tiny_config), fixture_state)


@pytest.mark.slow
@pytest.mark.fixtures
def test_full_size_vox256_torch_checkpoint_converts(reference_dir, tmp_path):
    """A vox-256-shaped legacy file laid out like the official vox-cpk.pth.tar converts."""
    manifest = json.loads((reference_dir / "fomm_vox256_torch_keys.json").read_text())
    values: dict[str, float] = {}
    top: dict[str, object] = {}
    for section in manifest["checkpoint_top_level_keys"]:
        if section in ("generator", "kp_detector", "discriminator"):
            entries = manifest["discriminator_vox256" if section == "discriminator"
                               else section]
            sd = {}
            for i, e in enumerate(entries):
                fill = 1000 if e["dtype"] == "int64" else i * 0.25 + (0.5 if section ==
                                                                       "kp_detector" else 0)
                values[f"{section}/{e['key']}"] = fill
                sd[e["key"]] = tf.tensor(np.full(e["shape"], fill, dtype=e["dtype"]),
                                         location="cuda:0")
            top[section] = sd
        elif section.startswith("optimizer"):
            top[section] = {"state": {0: {"step": 10, "exp_avg": tf.tensor(np.ones(8, np.float32)),
                                          "exp_avg_sq": tf.tensor(np.ones(8, np.float32))}},
                            "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "eps": 1e-8,
                                              "weight_decay": 0, "amsgrad": False,
                                              "params": [0]}]}
        else:
            top[section] = 99
    src = tf.write_legacy(tmp_path / "vox-cpk.pth.tar", top)
    assert src.stat().st_size > 4 * (manifest["counts"]["generator_float_numel"]
                                     + manifest["counts"]["kp_detector_float_numel"])
    dst = convert_torch_checkpoint(src, tmp_path / "vox-cpk.pdparams")
    del top
    loaded = load_checkpoint(dst)
    layout = expected_layout()
    for section in ("generator", "kp_detector"):
        assert [(k, v.shape) for k, v in loaded[section].items()] == \
            [(k, s) for k, s, _d in layout[section]]
        torch_keys = [e["key"] for e in manifest[section]
                      if not e["key"].endswith("num_batches_tracked")]
        for torch_key, (key, value) in zip(torch_keys, loaded[section].items(), strict=True):
            want = values[f"{section}/{torch_key}"]
            assert value.dtype == np.float32
            assert value.flat[0] == want and value.flat[-1] == want, key
    assert sum(v.size for v in loaded["generator"].values()) == \
        manifest["counts"]["generator_float_numel"]
    assert no_temp_files(tmp_path)
    assert checkpoint.open_checkpoint(src).top_level_keys == tuple(
        manifest["checkpoint_top_level_keys"])
