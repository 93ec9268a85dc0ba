"""Decode one image file to a square uint8 tensor at the load size."""

from __future__ import annotations

import torch
from PIL import Image, UnidentifiedImageError

from bench.data.datasets.errors import DatasetError


def decode_image(path: str, load_size: int, channels: int = 3) -> torch.Tensor:
    """Open ``path``, resize its short side to ``load_size``, centre-crop a square."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            w, h = im.size
            s = load_size / min(w, h)
            im = im.resize((max(load_size, round(w * s)), max(load_size, round(h * s))))
            w, h = im.size
            left, top = (w - load_size) // 2, (h - load_size) // 2
            im = im.crop((left, top, left + load_size, top + load_size))
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc
    return data.view(load_size, load_size, channels).permute(2, 0, 1).contiguous()
