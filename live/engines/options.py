"""The tunable options of each engine, as frozen dataclasses (the one set of defaults).

:class:`MeshOptions` is the settings file's ``[engine.mesh]`` table, :class:`FommOptions` its
``[engine.fomm]`` table; :class:`live.engines.base.EngineOptions` holds both. Where the FOMM
model comes from (``weights`` / ``model_dir``) is not an option here: the commands take it
as ``--weights`` and pass it to :func:`live.engines.base.create_engine`.

This module imports only the standard library and :mod:`calibrate` (numpy), so settings can be
read without importing an engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from calibrate.errors import InputError
from calibrate.hold import hold_option_checks

OptionsT = TypeVar("OptionsT", "MeshOptions", "FommOptions")

MOUTH_MODES = ("driver", "synthetic", "off")
"""Values of the mesh engine's ``mouth`` option."""

BODY_MODES = ("flow", "head")
"""Values of the mesh engine's ``body`` option."""

MESH_DEFAULT_SIZE = 512
"""The mesh engine's crop size when neither its options nor the command choose one."""


def _check(engine: str, checks: list[tuple[bool, str, str, Any]]) -> None:
    for ok, name, expected, got in checks:
        if not ok:
            raise InputError(f"{engine} engine option {name} is out of range",
                             expected=expected, got=repr(got))


def with_overrides(base: OptionsT, overrides: Mapping[str, Any], engine: str) -> OptionsT:
    """``base`` with keyword options replaced; an unknown name raises InputError listing the
    known ones."""
    names = [f.name for f in dataclasses.fields(base)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InputError(f"unknown {engine} engine option(s) {', '.join(unknown)}",
                         expected=", ".join(names), got=", ".join(unknown))
    return dataclasses.replace(base, **overrides) if overrides else base


def changed_options(options: MeshOptions | FommOptions) -> dict[str, Any]:
    """The options that differ from the defaults (for logs and reports)."""
    default = type(options)()
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
            if getattr(options, f.name) != getattr(default, f.name)}


@dataclass(frozen=True)
class MeshOptions:
    """Options of the mesh engine (TOML table ``[engine.mesh]``)."""

    size: int | None = None
    """Side of the portrait crop the engine animates and returns, in pixels (None: the
    command's crop size: ``mimicam demo`` its ``--size``, ``mimicam animate`` the largest face
    crop's own side in the picture (256 to 1536 px), otherwise 512)."""
    adapt_scale: bool = True
    """Scale the motion by the faces' size ratio (else by the crops' pixel ratio)."""
    smoothing: bool = True
    """One Euro filter on the driving landmarks (against jitter)."""
    min_cutoff: float = 3.0
    """One Euro cutoff (Hz) of a still face: lower is steadier but lags more."""
    beta: float = 6.0
    """One Euro speed coefficient (per inter-ocular distance per second): higher lags less."""
    d_cutoff: float = 1.0
    """One Euro cutoff (Hz) of the speed estimate."""
    lip_gain: float = 1.0
    """Gain on lip motion."""
    gaze_gain: float = 1.0
    """Gain on iris motion within the eye."""
    blink_close_at: float = 0.2
    """Driving eye-opening ratio at which the portrait's eye is fully closed."""
    max_eye_open: float = 1.6
    """Largest eye-opening ratio passed on."""
    jaw_follow: float = 0.9
    """How far the chin drops with the lower lip as the mouth opens (0: only as far as the
    driving face mesh says, about half of a wide-open jaw's drop; 1: as far as the lip)."""
    outline_follow: float = 0.6
    """How much of the face outline's own motion the rings around the face take."""
    mouth_fill: bool = True
    """Show a mouth interior where the mouth opens further than the portrait's own (False:
    the warped lips only, as ``mouth = "off"``)."""
    mouth: str = "driver"
    """Where an opening mouth's interior comes from: ``"driver"`` (your own teeth and tongue,
    colour-matched to the portrait; the synthetic one while yours is not visible),
    ``"synthetic"`` (the portrait's own teeth moved rigidly with each jaw, or drawn ones, over
    a throat in the portrait's lip hue), or ``"off"``."""
    gaze: bool = True
    """Redraw the irises where the driving gaze puts them (else the warp drags them)."""
    head_layer: bool = True
    """Segment the portrait once and warp only the person over a still background plate."""
    shading: float = 1.0
    """Expression shading: the driving face's creases and folds (its luminance over its
    neutral face's, mapped through the face mesh) multiplied into the portrait's skin, with
    this strength (0: off)."""
    body: str = "flow"
    """How hair, ears, neck and shoulders move: ``"flow"``, as the driving video's own do
    where it shows them (optical flow from the neutral frame, weighted by the driver's person
    matte); ``"head"``, a share of the head's motion that fades with the distance from the
    face."""
    grid: int = 256
    """Side of the triangle-index grid of the warp (smaller is faster and coarser; at most the
    crop size: a larger grid is reduced to it)."""
    hold_s: float = 0.4
    """Face lost: seconds to hold the last pose before easing back to neutral."""
    ease_half_life_s: float = 0.3
    """Face lost: half-life (s) of the ease back to neutral."""
    recover_half_life_s: float = 0.06
    """Face back: half-life (s) of the ease from the shown pose to the face's."""

    def __post_init__(self) -> None:
        _check("mesh", [
            (self.size is None or self.size >= 64, "size", ">= 64", self.size),
            (self.grid >= 16, "grid", ">= 16", self.grid),
            (self.min_cutoff > 0, "min_cutoff", "> 0", self.min_cutoff),
            (self.beta >= 0, "beta", ">= 0", self.beta),
            (self.d_cutoff > 0, "d_cutoff", "> 0", self.d_cutoff),
            (self.lip_gain >= 0, "lip_gain", ">= 0", self.lip_gain),
            (self.gaze_gain >= 0, "gaze_gain", ">= 0", self.gaze_gain),
            (0 <= self.blink_close_at < 1, "blink_close_at", "in [0, 1)", self.blink_close_at),
            (self.max_eye_open >= 1, "max_eye_open", ">= 1", self.max_eye_open),
            (0 <= self.jaw_follow <= 1, "jaw_follow", "in [0, 1]", self.jaw_follow),
            (0 <= self.outline_follow <= 1, "outline_follow", "in [0, 1]", self.outline_follow),
            (self.mouth in MOUTH_MODES, "mouth", " | ".join(map(repr, MOUTH_MODES)),
             self.mouth),
            (self.body in BODY_MODES, "body", " | ".join(map(repr, BODY_MODES)), self.body),
            (0.0 <= self.shading <= 2.0, "shading", "in [0, 2]", self.shading),
            *hold_option_checks(self),
        ])

    @property
    def crop_size(self) -> int:
        """The crop size the engine uses (``size``, else 512)."""
        return self.size if self.size is not None else MESH_DEFAULT_SIZE


@dataclass(frozen=True)
class FommOptions:
    """Options of the FOMM engine (TOML table ``[engine.fomm]``)."""

    backend: str = "auto"
    """Model runtime: auto, onnxruntime, paddle-cpu, paddle-gpu, paddle-trt."""
    precision: str = "fp32"
    """fp32; fp16 (GPU/TensorRT); bf16 (paddle-cpu with oneDNN, CPUs with AVX512-BF16/AMX)."""
    threads: int | None = None
    """CPU threads of the runtime (default: all cores)."""
    image_size: int = 256
    """The model's input/output size (256, or 512 for vox-cpk-512). A model directory of
    another size is used at its own size unless this was set to something else than 256."""
    size: int | None = None
    """Side of the crop the engine takes and returns (default: ``image_size``)."""
    relative: bool = True
    """Move the portrait by the driving motion since the neutral pose (else absolute)."""
    adapt_scale: bool = True
    """Scale the relative motion by the faces' size ratio (keypoint hulls)."""
    hold_s: float = 0.4
    """Face lost: seconds to hold the last pose before easing back to neutral."""
    ease_half_life_s: float = 0.3
    """Face lost: half-life (s) of the ease back to neutral."""
    recover_half_life_s: float = 0.06
    """Face back: half-life (s) of the ease from the shown pose to the face's."""

    def __post_init__(self) -> None:
        _check("fomm", [
            (self.image_size >= 64 and self.image_size % 32 == 0, "image_size",
             "256 or 512 (vox checkpoints)", self.image_size),
            (self.size is None or self.size >= 64, "size", ">= 64", self.size),
            (self.threads is None or self.threads >= 1, "threads", ">= 1", self.threads),
            *hold_option_checks(self),
        ])
