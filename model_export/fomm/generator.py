"""FOMM occlusion-aware generator (PaddleGAN ``OcclusionAwareGenerator`` layout).

``inference=True`` is PaddleGAN's border handling, which its ``FirstOrderPredictor`` always
uses: near the image border the warp grid is blended towards the identity grid (weight: a
9x9-blurred box mask that is 0 on a 5-pixel frame), and the occlusion map is forced to 1.0 on
that frame. ``inference=False`` is the original paper/code behaviour.
"""

from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

from model_export.fomm.config import FommConfig
from model_export.fomm.dense_motion import DenseMotionNetwork
from model_export.fomm.modules import (
    DownBlock2d,
    ResBlock2d,
    SameBlock2d,
    UpBlock2d,
    blur_2d,
    box_mask,
    make_coordinate_grid,
)

#: Width in pixels of the frame PaddleGAN's inference mode treats as border.
INFERENCE_BORDER = 5
#: The 9-tap kernel ``cv2.GaussianBlur(mask, (9, 9), 0)`` uses (OpenCV's fixed table for
#: ksize 9 when sigma is 0: [4, 13, 30, 51, 60, 51, 30, 13, 4] / 256).
BORDER_BLUR_TAPS: tuple[float, ...] = tuple(v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4))


def border_blend_mask(h: int, w: int, dtype: str = "float32") -> paddle.Tensor:
    """[1, h, w, 1] weight of the predicted flow in inference mode (identity gets 1 - it).

    The blur is zero padded, which equals OpenCV's ``BORDER_ISOLATED`` result here because
    the box mask is already 0 on a frame wider than the kernel radius.
    """
    blurred = blur_2d(box_mask(h, w, INFERENCE_BORDER, dtype), BORDER_BLUR_TAPS)
    return blurred.reshape([1, h, w, 1])


class OcclusionAwareGenerator(nn.Layer):
    """Source image + keypoints -> the source re-posed to the driving keypoints.

    ``forward(source_image, kp_driving, kp_source)`` returns ``mask``, ``sparse_deformed``,
    ``occlusion_map`` (when estimated), ``deformed`` and ``prediction`` [B, C, H, W] in [0, 1].
    """

    def __init__(self, config: FommConfig | None = None, *, inference: bool = True) -> None:
        super().__init__()
        config = config or FommConfig()
        cfg = config.generator
        self.inference = inference
        self.num_channels = config.num_channels
        self.estimate_occlusion_map = cfg.estimate_occlusion_map

        self.dense_motion_network = DenseMotionNetwork(
            config.num_kp, config.num_channels, cfg.dense_motion,
            estimate_occlusion_map=cfg.estimate_occlusion_map)
        self.first = SameBlock2d(config.num_channels, cfg.block_expansion, kernel_size=7,
                                 padding=3)
        be, mf, n = cfg.block_expansion, cfg.max_features, cfg.num_down_blocks
        self.down_blocks = nn.LayerList([
            DownBlock2d(min(mf, be * 2**i), min(mf, be * 2 ** (i + 1)), kernel_size=3, padding=1)
            for i in range(n)])
        self.up_blocks = nn.LayerList([
            UpBlock2d(min(mf, be * 2 ** (n - i)), min(mf, be * 2 ** (n - i - 1)), kernel_size=3,
                      padding=1)
            for i in range(n)])
        self.bottleneck = nn.Sequential()
        width = min(mf, be * 2**n)
        for i in range(cfg.num_bottleneck_blocks):
            self.bottleneck.add_sublayer(f"r{i}", ResBlock2d(width, kernel_size=3, padding=1))
        self.final = nn.Conv2D(be, config.num_channels, kernel_size=7, padding=3)

    def deform_input(self, inp: paddle.Tensor, deformation: paddle.Tensor) -> paddle.Tensor:
        """Warp ``inp`` [B, C, h, w] by ``deformation`` [B, h', w', 2] (resized to h, w)."""
        _, h_old, w_old, _ = deformation.shape
        _, _, h, w = inp.shape
        if (h_old, w_old) != (h, w):
            deformation = F.interpolate(deformation.transpose([0, 3, 1, 2]), size=[h, w],
                                        mode="bilinear", align_corners=False)
            deformation = deformation.transpose([0, 2, 3, 1])
        if self.inference:
            weight = border_blend_mask(h, w)
            identity = make_coordinate_grid(h, w).reshape([1, h, w, 2])
            deformation = weight * deformation + (1 - weight) * identity
        return F.grid_sample(inp, deformation, mode="bilinear", padding_mode="zeros",
                             align_corners=True)

    def feature_occlusion(self, occlusion: paddle.Tensor, size: list[int]) -> paddle.Tensor:
        """The occlusion map [B, 1, h, w] as it multiplies the warped features of spatial
        ``size`` [h', w']: resized to it (bilinear) when it differs and, in inference mode,
        forced to 1.0 on the border frame (PaddleGAN's border handling)."""
        if tuple(size) != tuple(occlusion.shape[2:]):
            occlusion = F.interpolate(occlusion, size=size, mode="bilinear", align_corners=False)
        if self.inference:
            h, w = occlusion.shape[2:]
            inner = box_mask(h, w, INFERENCE_BORDER, occlusion.dtype)
            occlusion = occlusion * inner + (1 - inner)
        return occlusion

    def forward(self, source_image: paddle.Tensor, kp_driving: dict[str, paddle.Tensor],
                kp_source: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)

        result: dict[str, paddle.Tensor] = {}
        motion = self.dense_motion_network(source_image=source_image, kp_driving=kp_driving,
                                           kp_source=kp_source)
        result["mask"] = motion["mask"]
        result["sparse_deformed"] = motion["sparse_deformed"]
        deformation = motion["deformation"]
        out = self.deform_input(out, deformation)

        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            used = self.feature_occlusion(occlusion, out.shape[2:])
            # PaddleGAN writes 1.0 into the border in place, so the map it returns shows the
            # border too (unless it had to be resized to the feature size first).
            same = self.inference and used.shape == occlusion.shape
            result["occlusion_map"] = used if same else occlusion
            out = out * used

        result["deformed"] = self.deform_input(source_image, deformation)

        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        result["prediction"] = F.sigmoid(self.final(out))
        return result
