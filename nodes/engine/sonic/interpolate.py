"""Frame interpolation (RIFE HDv3's IFNet, loading RIFE/flownet.pkl) and retiming to the output fps.

Sonic generates 12.5 fps and doubles it with RIFE. This IFNet is our own
implementation of the published architecture; its module names
(block0..2/block_tea, conv0/convblock0..3/conv1/conv2) are those of
flownet.pkl so the file loads strictly. Interpolation streams: each decoded
chunk is interpolated on the device together with the last frame of the
previous chunk, then leaves as uint8 - the whole video is never on the GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=True), nn.PReLU(cout))


def _residual_pair(c: int) -> nn.Sequential:
    return nn.Sequential(_conv(c, c), _conv(c, c))


def _up_head(c: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, out, 4, 2, 1)
    )


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1:
        return x
    return F.interpolate(
        x, scale_factor=factor, mode="bilinear", align_corners=False, recompute_scale_factor=False
    )


class FlowBlock(nn.Module):
    """One coarse-to-fine stage: (two images, mask, current flow) at 1/scale -> flow and mask updates."""

    def __init__(self, in_planes: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, c // 2, 2), _conv(c // 2, c, 2))
        self.convblock0 = _residual_pair(c)
        self.convblock1 = _residual_pair(c)
        self.convblock2 = _residual_pair(c)
        self.convblock3 = _residual_pair(c)
        self.conv1 = _up_head(c, 4)
        self.conv2 = _up_head(c, 1)

    def forward(self, x: torch.Tensor, flow: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = _resize(x, 1.0 / scale)
        flow = _resize(flow, 1.0 / scale) / scale
        feat = self.conv0(torch.cat([x, flow], 1))
        for block in (self.convblock0, self.convblock1, self.convblock2, self.convblock3):
            feat = block(feat) + feat
        return _resize(self.conv1(feat), scale) * scale, _resize(self.conv2(feat), scale)


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `image` at pixel + flow (bilinear, border padding, corner-aligned grid)."""
    n, _, h, w = flow.shape
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    gx = grid_x[None] + flow[:, 0] / ((image.shape[3] - 1.0) / 2.0)
    gy = grid_y[None] + flow[:, 1] / ((image.shape[2] - 1.0) / 2.0)
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    """RIFE HDv3 flow network (block_tea is the training-time teacher: loaded, never run)."""

    def __init__(self, c: int = 90) -> None:
        super().__init__()
        self.block0 = FlowBlock(7 + 4, c)
        self.block1 = FlowBlock(7 + 4, c)
        self.block2 = FlowBlock(7 + 4, c)
        self.block_tea = FlowBlock(10 + 4, c)

    @staticmethod
    def _swap(flow: torch.Tensor) -> torch.Tensor:
        return torch.cat([flow[:, 2:4], flow[:, :2]], 1)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, scales=(4.0, 2.0, 1.0)) -> torch.Tensor:
        """The frame halfway between img0 and img1 ([n, 3, H, W] in [0, 1])."""
        n, _, h, w = img0.shape
        flow = img0.new_zeros(n, 4, h, w)
        mask = img0.new_zeros(n, 1, h, w)
        warped0, warped1 = img0, img1
        for block, scale in zip((self.block0, self.block1, self.block2), scales, strict=True):
            f0, m0 = block(torch.cat([warped0, warped1, mask], 1), flow, scale)
            f1, m1 = block(torch.cat([warped1, warped0, -mask], 1), self._swap(flow), scale)
            flow = flow + (f0 + self._swap(f1)) / 2
            mask = mask + (m0 - m1) / 2
            warped0 = backward_warp(img0, flow[:, :2])
            warped1 = backward_warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)


@torch.no_grad()
def interpolate_stream(
    chunks: Iterable[torch.Tensor], net: IFNet | None, batch: int = 8
) -> Iterator[torch.Tensor]:
    """Yield frames at twice the rate: f0, mid(f0, f1), f1, ... (2n - 1 frames from n).

    `chunks` are float frames [k, 3, H, W] in [0, 1] on the device. With
    `net=None` frames pass through unchanged.
    """
    previous = None
    for chunk in chunks:
        if net is None:
            yield chunk
            continue
        frames = chunk if previous is None else torch.cat([previous, chunk])
        if frames.shape[0] >= 2:
            mids = []
            for s in range(0, frames.shape[0] - 1, batch):
                a = frames[s : s + batch + 1]
                mids.append(net(a[:-1].float(), a[1:].float()).clamp_(0, 1))
            mid = torch.cat(mids)
            out = torch.stack([frames[:-1], mid], dim=1).flatten(0, 1)
            yield out
        previous = frames[-1:]
    if previous is not None:
        yield previous


class Retimer:
    """Turn a stream of frames at `src_fps` into exactly `total` frames at `dst_fps` (nearest frame).

    Output frame k shows source frame round(k * src_fps / dst_fps); past the end
    of the source the last frame repeats. Holds at most one chunk.
    """

    def __init__(self, src_fps: float, dst_fps: float, total: int) -> None:
        self.ratio = src_fps / dst_fps
        self.total = total
        self.emitted = 0
        self.seen = 0
        self.last: np.ndarray | None = None

    def _source_index(self, k: int) -> int:
        return int(np.floor(k * self.ratio + 0.5))

    def push(self, frames: np.ndarray) -> np.ndarray | None:
        start = self.seen
        self.seen += frames.shape[0]
        self.last = frames[-1:]
        picks = []
        while self.emitted < self.total and self._source_index(self.emitted) < self.seen:
            picks.append(max(0, self._source_index(self.emitted) - start))
            self.emitted += 1
        return frames[picks] if picks else None

    def finish(self) -> np.ndarray | None:
        if self.emitted >= self.total or self.last is None:
            return None
        rest = self.total - self.emitted
        self.emitted = self.total
        return np.repeat(self.last, rest, axis=0)
