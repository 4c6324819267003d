"""FOMM hyper-parameters as frozen dataclasses.

The defaults are the vox-256 model (``config/vox-256.yaml`` of first-order-model, identical to
PaddleGAN's ``configs/firstorder_vox_256.yaml`` and to ``FirstOrderPredictor``'s built-in
config). They live here and nowhere else.

:meth:`FommConfig.from_yaml_dict` reads an already parsed YAML mapping in either layout:

* first-order-model: ``model_params: {common_params, kp_detector_params, generator_params}``
* PaddleGAN: ``model: {common_params, generator: {kp_detector_cfg, generator_cfg}}``

Keys missing from a section take the vox-256 default; unknown keys raise
:class:`calibrate.errors.InputError`. No YAML library is needed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calibrate.errors import InputError


@dataclass(frozen=True, slots=True)
class KPDetectorConfig:
    """Keypoint detector: an hourglass on the anti-aliased, downscaled image."""

    temperature: float = 0.1
    block_expansion: int = 32
    max_features: int = 1024
    scale_factor: float = 0.25
    num_blocks: int = 5
    single_jacobian_map: bool = False
    pad: int = 0


@dataclass(frozen=True, slots=True)
class DenseMotionConfig:
    """Dense motion network (inside the generator)."""

    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """Occlusion-aware generator."""

    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)


@dataclass(frozen=True, slots=True)
class FommConfig:
    """The whole FOMM model (keypoint detector + generator)."""

    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    kp_detector: KPDetectorConfig = field(default_factory=KPDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    @classmethod
    def vox256(cls) -> FommConfig:
        """The vox-256 configuration (also used by PaddleGAN's 512 checkpoint)."""
        return cls()

    @classmethod
    def from_yaml_dict(cls, d: Mapping[str, Any]) -> FommConfig:
        """Build a config from a parsed first-order-model or PaddleGAN YAML mapping.

        Accepts the whole YAML document (its dataset/training sections are ignored) or just
        the model part. Raises :class:`InputError` on unknown keys, wrong types or a layout
        that is neither of the two.
        """
        if not isinstance(d, Mapping):
            raise InputError("FOMM config must be a mapping", expected="a dict",
                             got=type(d).__name__)
        has_fom = "model_params" in d
        has_pg = "model" in d
        if has_fom and has_pg:
            raise InputError("FOMM config has both 'model_params' (first-order-model layout) "
                             "and 'model' (PaddleGAN layout)", expected="exactly one of them")
        if not (has_fom or has_pg):
            raise InputError("FOMM config has no model section",
                             expected="'model_params' (first-order-model) or 'model' "
                                      "(PaddleGAN)",
                             got=f"keys {sorted(map(str, d))}")
        _check_keys(d, _FOM_TOP if has_fom else _PG_TOP, "", required=())
        if has_fom:
            model = _section(d, "model_params", "")
            _check_keys(model, {"common_params", "kp_detector_params", "generator_params",
                                "discriminator_params"}, "model_params.",
                        required=("common_params", "kp_detector_params", "generator_params"))
            common = _section(model, "common_params", "model_params.")
            kp = _section(model, "kp_detector_params", "model_params.")
            gen = _section(model, "generator_params", "model_params.")
            return _build(common, kp, gen, "model_params.common_params.",
                          "model_params.kp_detector_params.", "model_params.generator_params.")
        model = _section(d, "model", "")
        _check_keys(model, {"name", "common_params", "generator", "discriminator",
                            "train_params"}, "model.", required=("common_params", "generator"))
        common = _section(model, "common_params", "model.")
        gen_wrap = _section(model, "generator", "model.")
        _check_keys(gen_wrap, {"name", "kp_detector_cfg", "generator_cfg"}, "model.generator.",
                    required=("kp_detector_cfg", "generator_cfg"))
        kp = _section(gen_wrap, "kp_detector_cfg", "model.generator.")
        gen = _section(gen_wrap, "generator_cfg", "model.generator.")
        return _build(common, kp, gen, "model.common_params.", "model.generator.kp_detector_cfg.",
                      "model.generator.generator_cfg.")


# Top-level sections of the two repositories' YAML files that hold no model hyper-parameter.
_FOM_TOP = {"model_params", "dataset_params", "train_params", "reconstruction_params",
            "animate_params", "visualizer_params"}
_PG_TOP = {"model", "epochs", "total_iters", "output_dir", "dataset", "lr_scheduler",
           "optimizer", "reconstruction_params", "animate_params", "visualizer_params",
           "log_config", "validate", "snapshot_config", "export_model"}


def _check_keys(section: Mapping[str, Any], allowed: set[str], prefix: str, *,
                required: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in section if k not in allowed)
    if unknown:
        raise InputError(f"unknown FOMM config key(s) {', '.join(prefix + k for k in unknown)}",
                         expected=f"only {', '.join(sorted(prefix + a for a in allowed))}")
    missing = [k for k in required if k not in section]
    if missing:
        raise InputError(f"FOMM config lacks {', '.join(prefix + k for k in missing)}")


def _section(parent: Mapping[str, Any], key: str, prefix: str) -> Mapping[str, Any]:
    value = parent[key]
    if not isinstance(value, Mapping):
        raise InputError(f"FOMM config key {prefix + key!r} must be a mapping",
                         got=f"{type(value).__name__} {value!r}")
    return value


def _typed(value: Any, tp: type, key: str) -> Any:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:  # float accepts ints too (YAML writes 1 for 1.0)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    if not ok:
        raise InputError(f"FOMM config key {key!r} has the wrong type",
                         expected=tp.__name__, got=f"{type(value).__name__} {value!r}")
    if tp is not bool and value <= 0 and not key.endswith(".pad"):
        raise InputError(f"FOMM config key {key!r} must be positive", got=repr(value))
    if key.endswith(".pad") and value < 0:
        raise InputError(f"FOMM config key {key!r} must be >= 0", got=repr(value))
    return value


_TYPES = {"float": float, "int": int, "bool": bool}


def _fill(cls: Any, values: Mapping[str, Any], prefix: str, *, skip: set[str],
          extra_ignored: frozenset[str] = frozenset()) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    allowed = set(fields) | extra_ignored | {"mobile_net"}
    _check_keys(values, allowed, prefix, required=())
    if values.get("mobile_net", False) is not False:
        raise InputError(f"FOMM config key {prefix}mobile_net: PaddleGAN's mobile architecture "
                         "is not supported", expected="false or absent",
                         got=repr(values["mobile_net"]))
    kwargs = {}
    for name, f in fields.items():
        if name in values:
            tp = _TYPES[f.type] if isinstance(f.type, str) else f.type
            kwargs[name] = _typed(values[name], tp, prefix + name)
    return cls(**kwargs)


def _build(common: Mapping[str, Any], kp: Mapping[str, Any], gen: Mapping[str, Any],
           common_prefix: str, kp_prefix: str, gen_prefix: str) -> FommConfig:
    top = _fill(FommConfig, common, common_prefix, skip={"kp_detector", "generator"})
    kp_cfg = _fill(KPDetectorConfig, kp, kp_prefix, skip=set())
    dense_raw = gen.get("dense_motion_params")
    if dense_raw is None:
        raise InputError(f"FOMM config lacks {gen_prefix}dense_motion_params "
                         "(a generator without dense motion is not supported)")
    if not isinstance(dense_raw, Mapping):
        raise InputError(f"FOMM config key {gen_prefix}dense_motion_params must be a mapping",
                         got=repr(dense_raw))
    dense = _fill(DenseMotionConfig, dense_raw, gen_prefix + "dense_motion_params.", skip=set())
    gen_cfg = _fill(GeneratorConfig, gen, gen_prefix, skip={"dense_motion"},
                    extra_ignored=frozenset({"dense_motion_params"}))
    gen_cfg = dataclasses.replace(gen_cfg, dense_motion=dense)
    return dataclasses.replace(top, kp_detector=kp_cfg, generator=gen_cfg)
