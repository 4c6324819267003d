"""The torch-free reader of torch checkpoint files (legacy and zip formats)."""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch_files as tf

from calibrate.errors import WeightsError
from model_export.torch_pickle import (
    FORMAT_LEGACY,
    FORMAT_ZIP,
    TensorStub,
    read_torch_file,
    sniff_torch_format,
)

WRITERS = {"legacy": tf.write_legacy, "zip": tf.write_zip}


def _paddle_fixture(reference_dir: Path) -> dict:
    with open(reference_dir / "parity_tiny_paddle.pdparams", "rb") as f:
        return pickle.load(f)  # trusted team fixture: plain pickle is fine here


@pytest.mark.parametrize(("name", "fmt"), [("parity_tiny_torch.pth.tar", FORMAT_LEGACY),
                                           ("parity_tiny_torch_zipformat.pth.tar", FORMAT_ZIP)])
@pytest.mark.fixtures
def test_reference_torch_files_match_the_paddle_fixture_bit_for_bit(reference_dir, name, fmt):
    path = reference_dir / name
    assert sniff_torch_format(path) == fmt
    loaded = read_torch_file(path)
    assert loaded.format == fmt
    paddle = _paddle_fixture(reference_dir)
    assert list(loaded.data) == ["generator", "kp_detector"]
    for section in ("generator", "kp_detector"):
        torch_sd = loaded.data[section]
        batches = [k for k in torch_sd if k.endswith(".num_batches_tracked")]
        assert batches, "the torch layout has num_batches_tracked entries"
        for key in batches:
            value = torch_sd[key]
            assert value.dtype == np.int64 and value.shape == () and int(value) == 1000
        renamed = [k.replace(".running_mean", "._mean").replace(".running_var", "._variance")
                   for k in torch_sd if k not in batches]
        assert renamed == list(paddle[section])  # same order after the BN rename
        for key, pkey in zip([k for k in torch_sd if k not in batches], renamed, strict=True):
            got, want = torch_sd[key], paddle[section][pkey][1]
            assert got.dtype == want.dtype == np.float32
            assert got.shape == want.shape
            assert got.tobytes() == want.tobytes(), key


def _mixed_checkpoint(location: str = "cpu") -> tuple[dict, dict]:
    """A checkpoint exercising strides, offsets, shared storage and several dtypes."""
    base = np.arange(60, dtype=np.float32).reshape(3, 4, 5) * 0.5 - 7
    whole = tf.tensor(base, location=location)
    transposed = tf.FakeTensor(whole.storage, 0, (5, 4), (1, 5))  # base[0].T
    window = tf.FakeTensor(whole.storage, 21, (2, 3), (5, 1))  # base[1, 0:2, 1:4] (offset 21)
    halves = np.array([0.5, -1.25, 65504.0], dtype=np.float16)
    bf16_values = np.array([1.0, -2.5, 3.140625, 1e30], dtype=np.float32)
    objects = {
        "model": collections.OrderedDict([
            ("whole", whole), ("transposed", transposed), ("window", window),
            ("half", tf.tensor(halves, location=location)),
            ("bf16", tf.bfloat16_tensor(bf16_values)),
            ("long", tf.tensor(np.array([-(2 ** 40), 3], dtype=np.int64))),
            ("mask", tf.tensor(np.array([True, False, True]))),
            ("bytes", tf.tensor(np.array([0, 255, 7], dtype=np.uint8))),
            ("scalar", tf.tensor(np.array(1000, dtype=np.int64))),
            ("empty", tf.tensor(np.zeros((0, 3), dtype=np.float32))),
        ]),
        "optimizer": {"state": {0: {"step": 5, "exp_avg": tf.tensor(np.ones(4, np.float32))}},
                      "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0, 1],
                                        "amsgrad": False}]},
        "epoch": 99,
    }
    expected = {
        "whole": base, "transposed": base[0].T, "window": base[1, 0:2, 1:4],
        "half": halves, "bf16": np.array([1.0, -2.5, 3.140625, 1e30], np.float32),
        "long": np.array([-(2 ** 40), 3], np.int64), "mask": np.array([True, False, True]),
        "bytes": np.array([0, 255, 7], np.uint8), "scalar": np.array(1000, np.int64),
        "empty": np.zeros((0, 3), np.float32),
    }
    # bfloat16 keeps the top 16 bits of float32; these values are exactly representable
    # except 1e30, which was truncated by the writer the same way the reader widens it.
    expected["bf16"] = (expected["bf16"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    return objects, expected


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("location", ["cpu", "cuda:0"])
def test_tensor_layouts_and_dtypes_round_trip(tmp_path, fmt, location):
    objects, expected = _mixed_checkpoint(location)
    path = WRITERS[fmt](tmp_path / "mixed.pth.tar", objects)
    loaded = read_torch_file(path).data
    model = loaded["model"]
    assert list(model) == list(expected)
    for key, want in expected.items():
        got = model[key]
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert model["transposed"].flags.c_contiguous
    assert loaded["epoch"] == 99
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.999)
    np.testing.assert_array_equal(loaded["optimizer"]["state"][0]["exp_avg"], np.ones(4))
    assert type(loaded["model"]) is dict  # OrderedDicts come back as plain dicts


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_unselected_entries_become_stubs(tmp_path, fmt):
    objects, _expected = _mixed_checkpoint()
    path = WRITERS[fmt](tmp_path / "mixed.pth.tar", objects)
    loaded = read_torch_file(path, keys=["optimizer"]).data
    assert isinstance(loaded["optimizer"]["state"][0]["exp_avg"], np.ndarray)
    stub = loaded["model"]["window"]
    assert isinstance(stub, TensorStub)
    assert stub.shape == (2, 3) and stub.dtype == "float32" and stub.size == 6
    assert loaded["model"]["bf16"].dtype == "bfloat16"
    assert loaded["epoch"] == 99


def test_big_endian_legacy_file(tmp_path):
    objects, expected = _mixed_checkpoint()
    path = tf.write_legacy(tmp_path / "be.pth.tar", objects, little_endian=False)
    model = read_torch_file(path).data["model"]
    for key, want in expected.items():
        np.testing.assert_array_equal(model[key], want, err_msg=key)
        assert model[key].dtype.isnative


def test_legacy_storage_views(tmp_path):
    whole = tf.tensor(np.arange(20, dtype=np.float32))
    view = tf.FakeTensor(whole.storage, 1, (2, 2), (2, 1), view=("view-1", 10, 6))
    path = tf.write_legacy(tmp_path / "views.pth.tar", {"v": view})
    np.testing.assert_array_equal(read_torch_file(path).data["v"], [[11, 12], [13, 14]])


def test_zip_archive_name_is_not_fixed(tmp_path):
    path = tf.write_zip(tmp_path / "x.pth", {"a": tf.tensor(np.ones(3, np.float32))},
                        archive="vox-cpk")
    np.testing.assert_array_equal(read_torch_file(path).data["a"], np.ones(3))


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _legacy_with_main_pickle(path: Path, main: bytes) -> Path:
    with open(path, "wb") as f:
        pickle.dump(tf.MAGIC, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"little_endian": True}, f, protocol=2)
        f.write(main)
        pickle.dump([], f, protocol=2)
    return path


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("attack", ["os.system", "builtins.eval"])
def test_malicious_pickle_is_refused_without_running(tmp_path, fmt, attack):
    marker = tmp_path / "pwned"
    if attack == "os.system":
        payload = _Evil(os.system, f"touch {marker}")
        named = "system"
    else:
        payload = _Evil(eval, f"open({str(marker)!r}, 'w').close()")
        named = "builtin__.eval"  # protocol 2 names the module __builtin__
    main = pickle.dumps({"generator": payload}, protocol=2)
    if fmt == "legacy":
        path = _legacy_with_main_pickle(tmp_path / "evil.pth.tar", main)
    else:
        path = tmp_path / "evil.pth.tar"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", main)
    with pytest.raises(WeightsError) as info:
        read_torch_file(path)
    assert named in str(info.value)
    assert "refusing" in str(info.value)
    assert not marker.exists()


def test_truncated_legacy_file_is_reported(tmp_path):
    objects, _ = _mixed_checkpoint()
    path = tf.write_legacy(tmp_path / "full.pth.tar", objects)
    data = path.read_bytes()
    for cut in (len(data) - 5, len(data) // 2, 40):
        bad = tmp_path / f"cut{cut}.pth.tar"
        bad.write_bytes(data[:cut])
        with pytest.raises(WeightsError, match=r"truncated|corrupt"):
            read_torch_file(bad)


def test_truncated_zip_file_is_reported(tmp_path):
    objects, _ = _mixed_checkpoint()
    path = tf.write_zip(tmp_path / "full.pth.tar", objects)
    data = path.read_bytes()
    bad = tmp_path / "cut.pth.tar"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"truncated|corrupt"):
        read_torch_file(bad)


def test_tensor_reaching_past_its_storage_is_corrupt(tmp_path):
    t = tf.tensor(np.zeros(4, np.float32))
    bad = tf.FakeTensor(t.storage, 2, (4,), (1,))
    path = tf.write_legacy(tmp_path / "bad.pth.tar", {"a": bad})
    with pytest.raises(WeightsError, match="storage 0 holds 4 elements"):
        read_torch_file(path)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "x.pth.tar"
    path.write_bytes(pickle.dumps({"a": 1}))
    assert sniff_torch_format(path) is None
    with pytest.raises(WeightsError, match="not a torch checkpoint"):
        read_torch_file(path)
