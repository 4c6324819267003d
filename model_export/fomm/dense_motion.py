"""FOMM dense motion network (PaddleGAN ``DenseMotionNetwork`` layout)."""

from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

from model_export.fomm.config import DenseMotionConfig
from model_export.fomm.modules import (
    AntiAliasInterpolation2d,
    Hourglass,
    invert_2x2,
    kp2gaussian,
    make_coordinate_grid,
    matmul_2x2,
)


class DenseMotionNetwork(nn.Layer):
    """Predicts a dense backward flow (and an occlusion map) from sparse keypoint motions.

    ``forward(source_image, kp_driving, kp_source)`` takes keypoint dicts
    (``value`` [B, K, 2], optional ``jacobian`` [B, K, 2, 2]) and returns ``mask``
    [B, K+1, h, w], ``sparse_deformed`` [B, K+1, C, h, w], ``deformation`` [B, h, w, 2] and,
    when estimated, ``occlusion_map`` [B, 1, h, w]; h, w is the downscaled source size.
    """

    def __init__(self, num_kp: int, num_channels: int, config: DenseMotionConfig | None = None,
                 *, estimate_occlusion_map: bool = True) -> None:
        super().__init__()
        cfg = config or DenseMotionConfig()
        self.num_kp = num_kp
        self.num_channels = num_channels
        self.scale_factor = cfg.scale_factor
        self.kp_variance = cfg.kp_variance

        self.hourglass = Hourglass(cfg.block_expansion,
                                   in_features=(num_kp + 1) * (num_channels + 1),
                                   num_blocks=cfg.num_blocks, max_features=cfg.max_features)
        self.mask = nn.Conv2D(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion: nn.Conv2D | None = None
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2D(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
        if self.scale_factor != 1:
            self.down: AntiAliasInterpolation2d | None = AntiAliasInterpolation2d(
                num_channels, self.scale_factor)
        else:
            self.down = None

    def heatmap_representation(self, h: int, w: int, kp_driving: dict[str, paddle.Tensor],
                               kp_source: dict[str, paddle.Tensor]) -> paddle.Tensor:
        """[B, K+1, 1, h, w]: zeros (background), then Gaussian(driving) - Gaussian(source)."""
        heat = (kp2gaussian(kp_driving["value"], h, w, self.kp_variance)
                - kp2gaussian(kp_source["value"], h, w, self.kp_variance))
        heat = paddle.concat([paddle.zeros_like(heat[:, :1]), heat], axis=1)
        return heat.unsqueeze(2)

    def sparse_motions(self, h: int, w: int, kp_driving: dict[str, paddle.Tensor],
                       kp_source: dict[str, paddle.Tensor]) -> paddle.Tensor:
        """[B, K+1, h, w, 2]: identity, then J_s J_d^-1 (z - kp_d) + kp_s per keypoint."""
        identity = make_coordinate_grid(h, w).reshape([1, 1, h, w, 2])
        rel = identity - kp_driving["value"].unsqueeze([2, 3])  # [B, K, h, w, 2]
        jac_d = kp_driving.get("jacobian")
        jac_s = kp_source.get("jacobian")
        if jac_d is not None and jac_s is not None:
            jac = matmul_2x2(jac_s, invert_2x2(jac_d)).unsqueeze([2, 3])  # [B, K, 1, 1, 2, 2]
            rx = rel[..., 0]
            ry = rel[..., 1]
            rel = paddle.stack([jac[..., 0, 0] * rx + jac[..., 0, 1] * ry,
                                jac[..., 1, 0] * rx + jac[..., 1, 1] * ry], axis=-1)
        driving_to_source = rel + kp_source["value"].unsqueeze([2, 3])
        background = paddle.zeros_like(driving_to_source[:, :1]) + identity
        return paddle.concat([background, driving_to_source], axis=1)

    def deformed_sources(self, source: paddle.Tensor, motions: paddle.Tensor) -> paddle.Tensor:
        """Warp ``source`` [B, C, h, w] with each of the K+1 motions -> [B, K+1, C, h, w]."""
        _, c, h, w = source.shape
        n = self.num_kp + 1
        repeated = source.unsqueeze(1).tile([1, n, 1, 1, 1]).reshape([-1, c, h, w])
        warped = F.grid_sample(repeated, motions.reshape([-1, h, w, 2]), mode="bilinear",
                               padding_mode="zeros", align_corners=True)
        return warped.reshape([-1, n, c, h, w])

    def forward(self, source_image: paddle.Tensor, kp_driving: dict[str, paddle.Tensor],
                kp_source: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        if self.down is not None:
            source_image = self.down(source_image)
        _, _, h, w = source_image.shape
        out: dict[str, paddle.Tensor] = {}

        heat = self.heatmap_representation(h, w, kp_driving, kp_source)
        motions = self.sparse_motions(h, w, kp_driving, kp_source)
        deformed = self.deformed_sources(source_image, motions)
        out["sparse_deformed"] = deformed

        hourglass_in = paddle.concat([heat, deformed], axis=2)
        hourglass_in = hourglass_in.reshape([-1, (self.num_kp + 1) * (self.num_channels + 1),
                                             h, w])
        prediction = self.hourglass(hourglass_in)

        mask = F.softmax(self.mask(prediction), axis=1)
        out["mask"] = mask
        flows = motions.transpose([0, 1, 4, 2, 3])  # [B, K+1, 2, h, w]
        deformation = (flows * mask.unsqueeze(2)).sum(axis=1)
        out["deformation"] = deformation.transpose([0, 2, 3, 1])

        if self.occlusion is not None:
            out["occlusion_map"] = F.sigmoid(self.occlusion(prediction))
        return out
