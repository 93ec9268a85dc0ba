"""Union top-1 and per-task accuracy (methods.md "Setting")."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.data.datasets import LabelledImages
from bench.data.prepare import Layout, iterate_batches
from bench.data.views import Views


def top1(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of predictions equal to the labels."""
    if len(labels) == 0:
        return float("nan")
    return (pred == labels).float().mean().item()


def per_task_accuracy(pred: torch.Tensor, labels: torch.Tensor, sizes: list[int]) -> dict:
    """Accuracy on the test images of each task (labels in union order), the prediction
    still ranging over the whole union: ``{"T1": ..., "T2": ...}``."""
    out, start = {}, 0
    for t, size in enumerate(sizes):
        mask = (labels >= start) & (labels < start + size)
        out[f"T{t + 1}"] = top1(pred[mask], labels[mask])
        start += size
    return out


@torch.no_grad()
def predict_labels(
    predict: Callable[[torch.Tensor], torch.Tensor],
    images: LabelledImages,
    views: Views,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax predictions and labels over a split, in test-time views."""
    preds, labels = [], []
    for x, y in iterate_batches(images, batch_size, shuffle=False, num_workers=num_workers):
        logits = predict(views.test(x.to(device, non_blocking=True)))
        preds.append(logits.argmax(dim=1))  # stays on the device: no sync per batch
        labels.append(y)
    return torch.cat(preds).cpu(), torch.cat(labels)


def evaluate(
    predict: Callable[[torch.Tensor], torch.Tensor],
    images: LabelledImages,
    views: Views,
    layout: Layout | None,
    device: torch.device,
    num_workers: int = 0,
) -> dict:
    """``{"acc": union top-1, "task_acc": {"T1": ...}}`` (no task split without a layout)."""
    pred, labels = predict_labels(predict, images, views, device, num_workers=num_workers)
    result = {"acc": top1(pred, labels)}
    if layout is not None:
        result["task_acc"] = per_task_accuracy(pred, labels, layout.sizes)
    return result
