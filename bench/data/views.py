"""Two augmented views per training image, made on whole batches on the device.

methods.md "Views": RandomResizedCrop, ColorJitter, HorizontalFlip, GaussianBlur for
training; Resize + CenterCrop for testing. Batches arrive as uint8 ``B x C x L x L`` at the
loader's load size ``L``; each view is a float tensor at ``image_size``, normalised.
Doing it per batch (affine grids + separable blur) keeps tiny CPU suites fast and moves
the work to the GPU where there is one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.data.datasets.base import AugmentDefaults


class Views:
    def __init__(
        self,
        augment: AugmentDefaults,
        load_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        self.aug = augment
        self.size = augment.image_size
        self.load_size = load_size
        self._mean = torch.tensor(mean).view(1, -1, 1, 1)
        self._std = torch.tensor(std).view(1, -1, 1, 1)
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats.get(x.device) or self._stats.setdefault(
            x.device, (self._mean.to(x.device), self._std.to(x.device))
        )  # copied to a GPU once, not per batch (a host-to-device copy waits for the device)
        return (x - mean) / std

    def test(self, images: torch.Tensor) -> torch.Tensor:
        """Centre crop (or resize up) to ``image_size``; normalise."""
        x = images.float().div_(255)
        if self.load_size > self.size:
            top = (self.load_size - self.size) // 2
            x = x[:, :, top : top + self.size, top : top + self.size]
        elif self.load_size < self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self._normalize(x)

    def train(self, images: torch.Tensor) -> torch.Tensor:
        """One random view of every image in the batch."""
        x = images.float().div_(255)
        x = self._resized_crop_flip(x)
        if self.aug.jitter > 0:
            x = self._jitter(x)
        if self.aug.blur > 0:
            x = self._blur(x)
        return self._normalize(x)

    # --------------------------------------------------------------------- ops

    def _resized_crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        b, dev = x.shape[0], x.device
        lo, hi = self.aug.crop_scale
        area = torch.empty(b, device=dev).uniform_(lo, hi)
        log_ratio = torch.empty(b, device=dev).uniform_(math.log(3 / 4), math.log(4 / 3))
        ratio = log_ratio.exp()
        w = (area * ratio).sqrt().clamp(max=1.0)  # crop width / image width
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = (torch.rand(b, device=dev) * 2 - 1) * (1 - w)  # centre in [-1, 1] coords
        cy = (torch.rand(b, device=dev) * 2 - 1) * (1 - h)
        flip = torch.where(torch.rand(b, device=dev) < self.aug.flip, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        grid = F.affine_grid(theta, [b, x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        b, s = x.shape[0], self.aug.jitter

        def factor() -> torch.Tensor:
            return torch.empty(b, 1, 1, 1, device=x.device).uniform_(max(0.0, 1 - s), 1 + s)

        x = x * factor()  # brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factor() + mean  # contrast
        if x.shape[1] == 3:  # saturation
            grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
            x = (x - grey) * factor() + grey
        return x.clamp_(0, 1)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        lo, hi = self.aug.blur_sigma
        sigma = torch.empty(b, device=x.device).uniform_(lo, hi)
        apply = torch.rand(b, device=x.device) < self.aug.blur
        # no early return when nothing is blurred: asking would make the host wait for the
        # device every step; a batch without a blurred image goes through delta kernels
        radius = max(1, min(int(math.ceil(2 * hi)), (min(hgt, wid) - 1) // 2))
        taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        delta = (taps == 0).to(x.dtype).expand_as(kernel)
        kernel = torch.where(apply[:, None], kernel, delta)  # B x k
        k = kernel.repeat_interleave(c, dim=0)  # (B*C) x k
        y = x.reshape(1, b * c, hgt, wid)
        y = F.pad(y, (radius, radius, radius, radius), mode="replicate")
        y = F.conv2d(y, k[:, None, None, :], groups=b * c)
        y = F.conv2d(y, k[:, None, :, None], groups=b * c)
        return y.reshape(b, c, hgt, wid)
