"""Typed engine options: the ``[engine.mesh]`` / ``[engine.fomm]`` tables of a settings file and
the shared engine flags reach the engine the same way in ``mimicam live``, ``animate`` and
``demo``; unknown keys are errors naming the key; flags override the file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibrate.errors import InputError
from live.cli import animate as animate_cli
from live.cli import demo as demo_cli
from live.cli import live as live_cli
from live.cli.main import build_parser, main
from live.config import LiveConfig, load_toml
from live.engines import EngineOptions, FommOptions, MeshOptions, create_engine
from live.io.video import probe_video
from live.jobs.animate import resolve_engine

SETTINGS = """\
[engine.mesh]
lip_gain = 1.3
smoothing = false
adapt_scale = false
size = 256

[engine.fomm]
backend = "paddle-cpu"
image_size = 512
hold_s = 0.2
"""


def _toml(tmp_path: Path, text: str, name: str = "settings.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _parse(command: str, *argv: str) -> argparse.Namespace:
    if command == "animate":
        argv = ("--source-image", "a.png", "--driving-video", "b.mp4", "-o", "c.mp4", *argv)
    return build_parser().parse_args([command, *argv])


def engine_options(command: str, *argv: str) -> EngineOptions:
    """The engine options ``mimicam COMMAND ARGV`` would build its engine with."""
    args = _parse(command, *argv)
    if command == "live":
        return live_cli.config_from_args(args).engine_options
    if command == "animate":
        options: EngineOptions = animate_cli.config_from_args(args).engine_options
        return options
    options = demo_cli.engine_options(args)
    return options


COMMANDS = ("live", "animate", "demo")


# -- the settings file ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_engine_tables_are_read_by_every_command(tmp_path: Path, command: str) -> None:
    options = engine_options(command, "--config", str(_toml(tmp_path, SETTINGS)))
    assert options.mesh == MeshOptions(lip_gain=1.3, smoothing=False, adapt_scale=False,
                                       size=256)
    assert options.fomm == FommOptions(backend="paddle-cpu", image_size=512, hold_s=0.2)


def test_engine_is_a_name_or_a_table(tmp_path: Path) -> None:
    cfg = load_toml(_toml(tmp_path, 'engine = "fomm"\n'), LiveConfig)
    assert cfg.engine == "fomm" and cfg.engine_options == EngineOptions()
    cfg = load_toml(_toml(tmp_path, '[engine]\nname = "fomm"\n[engine.fomm]\nthreads = 2\n'),
                    LiveConfig)
    assert cfg.engine == "fomm" and cfg.engine_options.fomm.threads == 2
    cfg = load_toml(_toml(tmp_path, "[engine.mesh]\nbeta = 2.5\n"), LiveConfig)
    assert cfg.engine == "mesh" and cfg.engine_options.mesh.beta == 2.5  # name: the default
    # the legacy crop_size key is both engines' size
    cfg = load_toml(_toml(tmp_path, "crop_size = 320\n"), LiveConfig)
    assert cfg.engine_options.mesh.size == 320 and cfg.engine_options.fomm.size == 320


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_engine_keys_are_errors_naming_the_key(tmp_path: Path, command: str) -> None:
    path = _toml(tmp_path, "[engine.mesh]\nlip_gain = 1.0\nwobble = 3\n")
    with pytest.raises(InputError, match=r"engine\.mesh\.wobble.*expected keys of "
                                         r"\[engine\.mesh\]:.*lip_gain"):
        engine_options(command, "--config", str(path))
    path.write_text("[engine.fomm]\nbakend = 'auto'\n")
    with pytest.raises(InputError, match=r"engine\.fomm\.bakend"):
        engine_options(command, "--config", str(path))
    path.write_text("[engine]\nnmae = 'mesh'\n")
    with pytest.raises(InputError, match=r"engine\.nmae.*name, mesh, fomm"):
        engine_options(command, "--config", str(path))
    path.write_text("[engine_options.mesh]\nsmoothing = false\n")
    with pytest.raises(InputError, match=r"unknown config key engine_options"):
        engine_options(command, "--config", str(path))
    path.write_text("[engine.mesh]\nsmoothing = 'no'\n")
    with pytest.raises(InputError, match=r"'engine\.mesh\.smoothing' has the wrong type"):
        engine_options(command, "--config", str(path))
    path.write_text("[engine.mesh]\nmin_cutoff = -1\n")
    with pytest.raises(InputError, match=r"min_cutoff is out of range.*expected > 0.*got -1"):
        engine_options(command, "--config", str(path))


def test_animate_settings_take_its_keys_and_refuse_the_shorthands(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'multi_face = true\ncrf = 20\n[engine]\nname = "mesh"\n'
                 "[engine.mesh]\nsmoothing = false\n")
    cfg = animate_cli.config_from_args(_parse("animate", "--config", str(path)))
    assert cfg.engine == "mesh" and cfg.multi_face and cfg.crf == 20
    assert cfg.engine_options.mesh.smoothing is False
    assert cfg.source_image == Path("a.png")  # the paths are flags
    path.write_text("adapt_scale = false\n")
    with pytest.raises(InputError, match=r"adapt_scale.*\[engine\.mesh\] / \[engine\.fomm\]"):
        animate_cli.config_from_args(_parse("animate", "--config", str(path)))
    path.write_text('output = "x.mp4"\n')
    with pytest.raises(InputError, match=r"'output'.*--output on the command line"):
        animate_cli.config_from_args(_parse("animate", "--config", str(path)))


def test_demo_settings_are_for_the_mesh_engine(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'engine = "fomm"\n')
    with pytest.raises(InputError, match="demo runs the weight-free mesh engine"):
        engine_options("demo", "--config", str(path))


# -- the flags ---------------------------------------------------------------------------------


FLAGS = ("--no-adapt-scale", "--crop-size", "320", "--image-size", "512", "--absolute",
         "--no-smoothing", "--backend", "onnxruntime")


def test_the_engine_flags_mean_the_same_in_every_command() -> None:
    built = {command: engine_options(command, *FLAGS) for command in COMMANDS}
    assert built["live"] == built["animate"] == built["demo"]
    options = built["live"]
    assert options.mesh == MeshOptions(adapt_scale=False, size=320, smoothing=False)
    assert options.fomm == FommOptions(adapt_scale=False, size=320, image_size=512,
                                       relative=False, backend="onnxruntime")
    # --image-size alone: fomm's model size, and the mesh engine's crop size
    for command in COMMANDS:
        options = engine_options(command, "--image-size", "256", "--adapt_scale")
        assert options.mesh.size == 256 and options.fomm.image_size == 256
        assert options.fomm.size is None and options.mesh.adapt_scale
    # no flags: the defaults, untouched
    assert {engine_options(c) for c in COMMANDS} == {EngineOptions()}
    assert live_cli.config_from_args(_parse("live")) == LiveConfig()


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_override_the_settings_file(tmp_path: Path, command: str) -> None:
    path = _toml(tmp_path, SETTINGS)
    options = engine_options(command, "--config", str(path), "--adapt-scale", "--smoothing",
                             "--crop-size", "384", "--backend", "onnxruntime")
    assert options.mesh.adapt_scale and options.mesh.smoothing and options.mesh.size == 384
    assert options.mesh.lip_gain == 1.3  # from the file
    assert options.fomm.backend == "onnxruntime" and options.fomm.image_size == 512


def test_live_crop_size_flag_beats_the_files_crop_size(tmp_path: Path) -> None:
    path = _toml(tmp_path, "crop_size = 256\n[engine.mesh]\nsize = 320\n")
    assert engine_options("live", "--config", str(path)).mesh.size == 256
    cfg = live_cli.config_from_args(_parse("live", "--config", str(path), "--crop-size", "384"))
    assert cfg.crop_size == 384 and cfg.engine_options.mesh.size == 384


# -- engine construction --------------------------------------------------------------------------


def test_create_engine_builds_from_the_options() -> None:
    options = EngineOptions(mesh=MeshOptions(size=128, smoothing=False, lip_gain=0.5))
    engine = create_engine("mesh", options)
    try:
        assert engine.size == 128
        assert engine.options == options.mesh  # type: ignore[attr-defined]
        assert engine._warp.grid == 128  # type: ignore[attr-defined]  # clamped to the size
    finally:
        engine.close()
    with pytest.raises(InputError, match="absolute motion needs the fomm engine"):
        create_engine("mesh", EngineOptions().apply(relative=False))
    engine = create_engine("mesh", EngineOptions(), gaze_gain=0.0)  # keywords still work
    assert engine.options.gaze_gain == 0.0 and engine.size == 512  # type: ignore[attr-defined]
    engine.close()


class _FakeRuntime:
    image_size = 256
    backend = "fake"

    def close(self) -> None:
        pass


def test_fomm_engine_takes_its_table() -> None:
    options = EngineOptions(fomm=FommOptions(adapt_scale=False, size=384, hold_s=0.1))
    engine = create_engine("fomm", options, runtime=_FakeRuntime())
    assert engine.size == 384 and engine.options == options.fomm  # type: ignore[attr-defined]
    assert engine.config is engine.options  # type: ignore[attr-defined]  # the older name
    engine.close()
    with pytest.raises(InputError, match=r"unknown fomm engine option.*wobble"):
        create_engine("fomm", options, runtime=_FakeRuntime(), wobble=1)


def test_animate_passes_the_fomm_table_to_the_engine(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import model_export.weights as weights

    monkeypatch.setattr(weights, "find_weights", lambda *a, **k: None)
    ckpt = tmp_path / "vox.pdparams"
    ckpt.write_bytes(b"x")
    path = _toml(tmp_path, SETTINGS)
    cfg = animate_cli.config_from_args(_parse("animate", "--config", str(path), "--weights",
                                              str(ckpt), "--no-adapt-scale"))
    spec = resolve_engine(cfg)
    assert spec.name == "fomm" and spec.weights == ckpt
    assert spec.engine_options.fomm == FommOptions(backend="paddle-cpu", image_size=512,
                                                   hold_s=0.2, adapt_scale=False)


# -- the commands build their engine with them -------------------------------------------------


@pytest.fixture()
def built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every engine the commands build (through the one factory)."""
    import live.engines as engines
    import live.engines.base as base

    real = base.create_engine
    made: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        engine = real(*args, **kwargs)
        made.append(engine)
        return engine

    monkeypatch.setattr(base, "create_engine", spy)
    monkeypatch.setattr(engines, "create_engine", spy)
    return made


MESH_TABLE = "[engine.mesh]\nlip_gain = 1.3\nsize = 256\nadapt_scale = true\n"


@pytest.mark.fixtures
def test_live_builds_its_engine_from_the_table(tmp_path: Path, built: list[Any],
                                               portraits_dir: Path, driving_dir: Path) -> None:
    path = _toml(tmp_path, MESH_TABLE)
    code = main(["live", "--portrait", str(portraits_dir / "lp_s42.jpg"), "--driver",
                 str(driving_dir / "lp_d0.mp4"), "--no-vcam", "--no-preview", "--duration", "1",
                 "--config", str(path), "--no-adapt-scale"])
    assert code == 0
    (engine,) = built
    assert engine.name == "mesh" and engine.size == 256
    assert engine.options.lip_gain == 1.3 and engine.options.adapt_scale is False


@pytest.mark.fixtures
def test_animate_builds_its_engine_from_the_table(tmp_path: Path, built: list[Any],
                                                  portraits_dir: Path,
                                                  driving_dir: Path) -> None:
    path = _toml(tmp_path, '[engine]\nname = "mesh"\n' + MESH_TABLE)
    out = tmp_path / "out.mp4"
    code = main(["animate", "--source-image", str(portraits_dir / "lp_s42.jpg"),
                 "--driving-video", str(driving_dir / "lp_d0.mp4"), "-o", str(out),
                 "--max-frames", "3", "--no-audio", "--config", str(path), "--no-adapt-scale"])
    assert code == 0 and probe_video(out).frame_count == 3
    (engine,) = built
    assert engine.name == "mesh" and engine.size == 256
    assert engine.options.lip_gain == 1.3 and engine.options.adapt_scale is False


def test_demo_builds_its_engine_from_the_table(tmp_path: Path, built: list[Any]) -> None:
    path = _toml(tmp_path, MESH_TABLE)
    out = tmp_path / "demo.mp4"
    code = main(["demo", "-o", str(out), "--seconds", "0.2", "--size", "128", "--no-preview",
                 "--config", str(path), "--no-adapt-scale"])
    assert code == 0
    (engine,) = built
    assert engine.size == 256  # the table's crop size; the frames are resized to --size
    assert engine.options.lip_gain == 1.3 and engine.options.adapt_scale is False
    info = probe_video(out)
    assert info.size == (128, 128) and info.frame_count == 6
    assert np.isfinite(info.fps)


def test_options_are_taken_by_their_whole_names_only(
        capsys: pytest.CaptureFixture[str]) -> None:
    # a prefix is not an option: `serve --port 9000` was `--portrait-cache 9000`, on the
    # default ports; every sub-command's parser (and the weights actions') refuses it
    args = build_parser().parse_args(["serve", "--portrait-cache", "5"])
    assert args.portrait_cache == 5
    for argv in (["serve", "--port", "9000"], ["live", "--portr", "a.png"],
                 ["animate", "--source", "a.png", "--driving-video", "b.mp4", "-o", "c.mp4"],
                 ["weights", "info", "--hel"]):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(argv)
        assert exit_.value.code == 2, argv
    assert "--port" in capsys.readouterr().err
