"""Model registry: every model returns the last stage's feature map, the pooled feature and
the logits (``ModelOutput``), which is all the losses of docs/methods.md need; methods that
need earlier stages (hints) get them timm-style from ``forward_intermediates``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from bench.core.errors import BenchError
from bench.core.registry import Registry
from bench.core.weights import LoadReport, read_state, report_for

MODELS = Registry("model")


class ModelOutput(NamedTuple):
    fmap: torch.Tensor  # B x C x h x w, last backbone stage, before pooling
    feat: torch.Tensor  # B x C, globally average-pooled fmap
    logits: torch.Tensor  # B x num_classes


class Classifier(nn.Module):
    """Backbone + global average pooling + linear head.

    ``backbone`` is a sequence of modules; ``stage_ends`` are the indices of the modules
    whose outputs are the model's stages (small_cnn: its 3 width stages; ResNets:
    ``layer1..layer4``), ``stage_channels`` their channel counts. Without them the last
    feature map is the only stage."""

    def __init__(
        self,
        backbone: nn.Sequential,
        channels: int,
        num_classes: int,
        stage_ends: Sequence[int] | None = None,
        stage_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_channels = channels
        self.fc = nn.Linear(channels, num_classes)
        if (stage_ends is None) != (stage_channels is None):
            raise ValueError("stage_ends and stage_channels go together")
        if stage_ends is not None and len(stage_ends) != len(stage_channels):
            raise ValueError(f"{len(stage_ends)} stage ends but {len(stage_channels)} channels")
        self.stage_ends = tuple(stage_ends) if stage_ends is not None else (len(backbone) - 1,)
        self.stage_channels = tuple(stage_channels) if stage_channels is not None else (channels,)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self._head(self.backbone(x))

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None
    ) -> tuple[ModelOutput, list[torch.Tensor]]:
        """The output of :meth:`forward` (bit for bit: the same modules in the same order)
        and the maps of the stages ``indices`` (negative counts from the end; None: all),
        in the order asked, from the same single pass."""
        n = len(self.stage_ends)
        wanted = range(n) if indices is None else indices
        for i in wanted:
            if not -n <= i < n:
                raise IndexError(f"stage {i}: the model has {n} stages")
        ends = [self.stage_ends[i] for i in wanted]
        maps: dict[int, torch.Tensor] = {}
        for i, module in enumerate(self.backbone):
            x = module(x)
            if i in ends:
                maps[i] = x
        return self._head(x), [maps[e] for e in ends]

    def _head(self, fmap: torch.Tensor) -> ModelOutput:
        feat = fmap.mean(dim=(2, 3))
        return ModelOutput(fmap, feat, self.fc(feat))


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


@MODELS.register("small_cnn")
def small_cnn(
    num_classes: int, in_channels: int = 3, image_size: int = 32, width: int = 32
) -> Classifier:
    """Three conv stages (width, 2x, 4x); stride-2 between stages while the map is > 4 px,
    so 8 px digits end at 4x4 and 32 px images at 8x8."""
    downs = max(0, min(2, int(math.log2(max(image_size, 4) / 4))))
    strides = [1] + [2 if i < downs else 1 for i in range(2)]
    chans = [width, 2 * width, 4 * width]
    layers, cin = [], in_channels
    for cout, stride in zip(chans, strides):
        layers += [_conv_bn(cin, cout, stride), _conv_bn(cout, cout, 1)]
        cin = cout
    ends = [1, 3, 5]  # the second conv of each stage
    return Classifier(nn.Sequential(*layers), chans[-1], num_classes, ends, chans)


def _torchvision_resnet(
    depth: int, num_classes: int, in_channels: int, image_size: int, small_input: bool | None
) -> Classifier:
    from bench.core.compat import import_torchvision

    tv = import_torchvision()
    net = getattr(tv.models, f"resnet{depth}")(weights=None)
    if small_input is None:
        small_input = image_size <= 64
    if small_input:  # CIFAR-style stem: keep resolution for 32 px inputs
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    channels = net.fc.in_features
    body = nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )
    stage_channels = [_out_channels(getattr(net, f"layer{i}")) for i in range(1, 5)]
    return Classifier(body, channels, num_classes, [4, 5, 6, 7], stage_channels)


def _out_channels(layer: nn.Module) -> int:
    """Channels a ResNet layer outputs: those of its last BatchNorm (the last block's)."""
    return [m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features


def _register_resnet(depth: int) -> None:
    @MODELS.register(f"resnet{depth}")
    def build(
        num_classes: int, in_channels: int = 3, image_size: int = 224, small_input=None
    ) -> Classifier:
        return _torchvision_resnet(depth, num_classes, in_channels, image_size, small_input)

    build.__doc__ = f"torchvision ResNet-{depth} (``small_input``: 3x3 stem, no max-pool)."


for _depth in (18, 34, 50):
    _register_resnet(_depth)


def load_pretrained(model: Classifier, path: str, arch: str = "the model") -> LoadReport:
    """Load a local checkpoint (a state dict, torchvision or this harness's naming) into
    ``model`` and say how it fitted (:mod:`bench.core.weights`): head tensors of another
    shape (another class count) and a stem of another shape (the small-input 3x3 stem)
    are skipped and named; a file that fits less than the backbone is refused."""
    try:
        state = read_state(path)
    except BenchError as exc:
        raise BenchError(f"pretrained: {exc}") from None
    report = report_for(model, path, state)
    if not report.fits:
        raise BenchError(f"pretrained: {report.refusal(arch)}")
    own = model.state_dict()
    for name, target in report.assign.items():
        own[target] = state[name]
    model.load_state_dict(own)
    return report


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    pretrained: str | None = None,
    **params,
) -> Classifier:
    """Build a registered model by name (and load a local pretrained checkpoint if given;
    :func:`build_model_reported` also returns how it fitted)."""
    return build_model_reported(arch, num_classes, in_channels, image_size, pretrained, **params)[0]


def build_model_reported(
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    pretrained: str | None = None,
    **params,
) -> tuple[Classifier, LoadReport | None]:
    """:func:`build_model` and the :class:`~bench.core.weights.LoadReport` of its
    ``pretrained`` file (None without one)."""
    model = MODELS.get(arch)(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, **params
    )
    report = None
    if pretrained:
        report = load_pretrained(model, pretrained, arch)
    return model, report


def check_fit(arch: str, params: dict, path: str) -> LoadReport:
    """Read ``path`` and fit it against ``arch`` built on the meta device (no memory,
    no init; the class count and input size only change the head and the stem, which
    may differ anyway); :class:`BenchError` naming the file and the counts when it fits
    less than the backbone (:mod:`bench.core.weights`)."""
    state = read_state(path)
    with torch.device("meta"):
        model = MODELS.get(arch)(num_classes=2, **params)
    report = report_for(model, path, state)
    if not report.fits:
        raise BenchError(report.refusal(arch))
    return report
