"""FOMM keypoint detector (PaddleGAN ``KPDetector`` layout)."""

from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

from model_export.fomm.config import FommConfig
from model_export.fomm.modules import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid


class KPDetector(nn.Layer):
    """Image [B, C, H, W] in [0, 1] -> ``{'value': [B, K, 2], 'jacobian': [B, K, 2, 2]}``.

    Keypoints are the expectation of a softmax heatmap over a [-1, 1] grid spanning the
    heatmap (which is smaller than the downscaled image when ``pad`` is 0). ``jacobian`` is
    absent when the config has ``estimate_jacobian=False``.
    """

    def __init__(self, config: FommConfig | None = None) -> None:
        super().__init__()
        config = config or FommConfig()
        cfg = config.kp_detector
        self.num_kp = config.num_kp
        self.temperature = cfg.temperature
        self.scale_factor = cfg.scale_factor
        self.estimate_jacobian = config.estimate_jacobian

        self.predictor = Hourglass(cfg.block_expansion, in_features=config.num_channels,
                                   num_blocks=cfg.num_blocks, max_features=cfg.max_features)
        self.kp = nn.Conv2D(self.predictor.out_filters, config.num_kp, kernel_size=7,
                            padding=cfg.pad)
        self.jacobian: nn.Conv2D | None = None
        self.num_jacobian_maps = 0
        if config.estimate_jacobian:
            self.num_jacobian_maps = 1 if cfg.single_jacobian_map else config.num_kp
            jacobian = nn.Conv2D(self.predictor.out_filters, 4 * self.num_jacobian_maps,
                                 kernel_size=7, padding=cfg.pad)
            # Training-time init (identity jacobians); checkpoints overwrite it.
            jacobian.weight.set_value(paddle.zeros(jacobian.weight.shape))
            jacobian.bias.set_value(
                paddle.to_tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps))
            self.jacobian = jacobian
        if self.scale_factor != 1:
            self.down: AntiAliasInterpolation2d | None = AntiAliasInterpolation2d(
                config.num_channels, self.scale_factor)
        else:
            self.down = None

    def forward(self, x: paddle.Tensor) -> dict[str, paddle.Tensor]:
        if self.down is not None:
            x = self.down(x)
        feature_map = self.predictor(x)
        logits = self.kp(feature_map)
        _, k, h, w = logits.shape
        heatmap = F.softmax(logits.reshape([0, k, h * w]) / self.temperature, axis=2)
        heatmap = heatmap.reshape([0, k, h, w])

        grid = make_coordinate_grid(h, w).reshape([1, 1, h, w, 2])
        value = (heatmap.unsqueeze(-1) * grid).sum(axis=[2, 3])
        out = {"value": value}

        if self.jacobian is not None:
            jmap = self.jacobian(feature_map).reshape([0, self.num_jacobian_maps, 4, h, w])
            weighted = heatmap.unsqueeze(2) * jmap  # [B, K, 4, h, w]
            jac = weighted.reshape([0, k, 4, h * w]).sum(axis=-1)
            out["jacobian"] = jac.reshape([0, k, 2, 2])
        return out
