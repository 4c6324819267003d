"""The FOMM networks split into the three graphs mimicam exports.

* :class:`KeypointGraph`: image -> keypoint values and jacobians (run on the portrait once and
  on every driving frame).
* :class:`SourceEncoder`: portrait -> what the generator needs from it on every frame: the
  encoded features (``first`` and the down blocks, the costliest part that depends on the
  portrait only) and the anti-aliased, downscaled portrait the dense motion network warps.
  Run once per portrait.
* :class:`Animator`: cached source state + source keypoints + normalised driving keypoints ->
  the animated frame (dense motion, feature warp, occlusion, bottleneck, decoder).

The wrappers own no weights: they call the sub-layers of the networks built by
:mod:`model_export.fomm` in the same order as ``OcclusionAwareGenerator.forward``, so eagerly
run ``Animator(gen)(*SourceEncoder(gen)(src), ...)`` equals ``gen(src, ...)["prediction"]``
exactly. Keypoint normalisation (relative motion, adapt scale) stays outside the graphs, in
:mod:`calibrate.keypoints`. Inputs and outputs are positional tensors (no dicts), as exported
programs need.
"""

from __future__ import annotations

from typing import Any

import paddle
import paddle.nn.functional as F
from paddle import nn

from model_export.fomm.generator import OcclusionAwareGenerator
from model_export.fomm.keypoint_detector import KPDetector


def _kp(value: paddle.Tensor, jacobian: paddle.Tensor | None) -> dict[str, paddle.Tensor]:
    return {"value": value} if jacobian is None else {"value": value, "jacobian": jacobian}


class KeypointGraph(nn.Layer):
    """``forward(image) -> (value, jacobian)`` (just ``value`` without jacobians)."""

    def __init__(self, kp_detector: KPDetector) -> None:
        super().__init__()
        self.kp_detector = kp_detector
        self.with_jacobian = kp_detector.jacobian is not None

    def forward(self, image: paddle.Tensor) -> Any:
        kp = self.kp_detector(image)
        if self.with_jacobian:
            return kp["value"], kp["jacobian"]
        return kp["value"]


class SourceEncoder(nn.Layer):
    """``forward(source_image) -> (source_features, source_small)``."""

    def __init__(self, generator: OcclusionAwareGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, source_image: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        gen = self.generator
        features = gen.first(source_image)
        for block in gen.down_blocks:
            features = block(features)
        down = gen.dense_motion_network.down
        small = down(source_image) if down is not None else source_image
        return features, small


class Animator(nn.Layer):
    """``forward(source_features, source_small, kp_source_value, kp_source_jacobian,
    kp_driving_value, kp_driving_jacobian) -> prediction`` [B, C, H, W] in [0, 1].

    :class:`AnimatorNoJacobian` is the same for configs without jacobians.
    """

    def __init__(self, generator: OcclusionAwareGenerator) -> None:
        super().__init__()
        self.generator = generator

    def dense_motion(self, source_small: paddle.Tensor, kp_driving: dict[str, paddle.Tensor],
                     kp_source: dict[str, paddle.Tensor]
                     ) -> tuple[paddle.Tensor, paddle.Tensor | None]:
        """The dense motion network from the already downscaled source:
        (deformation [B, h, w, 2], occlusion map [B, 1, h, w] or None)."""
        dm = self.generator.dense_motion_network
        _, _, h, w = source_small.shape
        heat = dm.heatmap_representation(h, w, kp_driving, kp_source)
        motions = dm.sparse_motions(h, w, kp_driving, kp_source)
        deformed = dm.deformed_sources(source_small, motions)
        hourglass_in = paddle.concat([heat, deformed], axis=2)
        hourglass_in = hourglass_in.reshape([-1, (dm.num_kp + 1) * (dm.num_channels + 1), h, w])
        prediction = dm.hourglass(hourglass_in)
        mask = F.softmax(dm.mask(prediction), axis=1)
        flows = motions.transpose([0, 1, 4, 2, 3])
        deformation = (flows * mask.unsqueeze(2)).sum(axis=1).transpose([0, 2, 3, 1])
        occlusion = F.sigmoid(dm.occlusion(prediction)) if dm.occlusion is not None else None
        return deformation, occlusion

    def forward(self, source_features: paddle.Tensor, source_small: paddle.Tensor,
                kp_source_value: paddle.Tensor, kp_source_jacobian: paddle.Tensor,
                kp_driving_value: paddle.Tensor, kp_driving_jacobian: paddle.Tensor
                ) -> paddle.Tensor:
        return self.animate(source_features, source_small,
                            _kp(kp_source_value, kp_source_jacobian),
                            _kp(kp_driving_value, kp_driving_jacobian))

    def animate(self, source_features: paddle.Tensor, source_small: paddle.Tensor,
                kp_source: dict[str, paddle.Tensor], kp_driving: dict[str, paddle.Tensor]
                ) -> paddle.Tensor:
        """The generator's forward after the source encoding."""
        gen = self.generator
        deformation, occlusion = self.dense_motion(source_small, kp_driving, kp_source)
        out = gen.deform_input(source_features, deformation)
        if occlusion is not None:
            out = out * gen.feature_occlusion(occlusion, out.shape[2:])
        out = gen.bottleneck(out)
        for block in gen.up_blocks:
            out = block(out)
        return F.sigmoid(gen.final(out))



class AnimatorNoJacobian(Animator):
    """``forward(source_features, source_small, kp_source_value, kp_driving_value)``."""

    def forward(self, source_features: paddle.Tensor, source_small: paddle.Tensor,  # type: ignore[override]
                kp_source_value: paddle.Tensor, kp_driving_value: paddle.Tensor
                ) -> paddle.Tensor:
        return self.animate(source_features, source_small, _kp(kp_source_value, None),
                            _kp(kp_driving_value, None))


def animator_for(generator: OcclusionAwareGenerator, with_jacobian: bool) -> Animator:
    """The animator wrapper matching a config with or without jacobians."""
    return Animator(generator) if with_jacobian else AnimatorNoJacobian(generator)
