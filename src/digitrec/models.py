"""The model registry: `create_model("seed")`. Every model maps (B, 1, 28, 28) to (B, classes) logits.
Beside them, `LineNet`, the line model's network (training/lines.py), which reads whole strips."""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

from .errors import UserError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn
    return deco


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def check_model(name: str, args: dict) -> None:
    """Refuse an unknown model, or arguments it does not take, with a message that says so."""
    fn = MODELS.get(name)
    if fn is None:
        create_model(name)
    unknown = sorted(set(args) - set(inspect.signature(fn).parameters) - {"num_classes"})
    if unknown:
        takes = ", ".join(p for p in inspect.signature(fn).parameters if p != "num_classes")
        raise UserError(f"model {name!r} takes no argument {', '.join(unknown)}; it takes: {takes}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@register("seed")
def seed(num_classes: int = 10, channels: int = 32) -> nn.Module:
    """The documented baseline: one 3x3 convolution, ReLU, one fully connected layer."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3),  # (B, 32, 26, 26)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * 26 * 26, num_classes),
    )


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register("fast")
def fast(num_classes: int = 10, width: int = 32) -> nn.Module:
    """Built for time to 99% on a CPU: a strided 5x5 stem takes 28x28 to 14x14 at once, so the
    costly 3x3 convolutions run on 7x7 maps. About 2.2 M multiply-adds per image."""
    w = width
    return nn.Sequential(
        *conv_bn(1, w, 5, stride=2),  # (B, w, 14, 14)
        *conv_bn(w, w * 3 // 2, 3, stride=2),  # (B, 1.5w, 7, 7)
        *conv_bn(w * 3 // 2, w * 2),  # (B, 2w, 7, 7)
        nn.MaxPool2d(2),  # (B, 2w, 3, 3)
        nn.Flatten(),
        nn.Linear(w * 2 * 9, num_classes),
    )


@register("lenet")
def lenet(num_classes: int = 10, width: int = 24) -> nn.Module:
    """The public speed record's network (tuomaso/train_mnist_fast): two convolutions, each
    max-pooled before its ReLU, and two linear layers; no batch norm. Cheap per image (about
    1.2 M multiply-adds), and in channels-last memory a CPU runs its step 2.5x as fast as in
    the default layout. 215,194 parameters at width 24."""
    w2 = width * 4 // 3
    return nn.Sequential(
        nn.Conv2d(1, width, 5),  # (B, 24, 24, 24)
        nn.MaxPool2d(2),  # (B, 24, 12, 12)
        nn.ReLU(),
        nn.Conv2d(width, w2, 3),  # (B, 32, 10, 10)
        nn.MaxPool2d(2),  # (B, 32, 5, 5)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(w2 * 25, 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    )


@register("deep")
def deep(num_classes: int = 10, width: int = 48, dropout: float = 0.1) -> nn.Module:
    """Built for accuracy per CPU-second: a 5x5 stem, then two VGG-style stages of two 3x3
    convolutions with batch norm on 14x14 and 7x7 maps, global average pooling.
    About 6 M multiply-adds per image at width 32, 14 M at width 48."""
    w = width
    return nn.Sequential(
        *conv_bn(1, w * 2 // 3, 5),  # (B, 32, 28, 28)
        nn.MaxPool2d(2),  # (B, 32, 14, 14)
        *conv_bn(w * 2 // 3, w), *conv_bn(w, w),  # (B, 48, 14, 14)
        nn.MaxPool2d(2),  # (B, 48, 7, 7)
        *conv_bn(w, w * 2), *conv_bn(w * 2, w * 2),  # (B, 96, 7, 7)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(w * 2, num_classes),
    )


class LineNet(nn.Module):
    """(B, 1, height, W) strips, W a multiple of 4 -> (B, classes + 1, W / 4) logits, the CTC blank
    last: convolutions down to a quarter of the width and an eighth of the height, the height
    folded into channels, 1-d convolutions along the line. Only convolutions: any width runs."""

    def __init__(self, num_classes: int = 10, width: int = 32, height: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *conv_bn(1, w // 2), nn.MaxPool2d(2),  # (B, w/2, 16, W/2)
            *conv_bn(w // 2, w), nn.MaxPool2d(2),  # (B, w, 8, W/4)
            *conv_bn(w, 2 * w), *conv_bn(2 * w, 2 * w), nn.MaxPool2d((2, 1)),  # (B, 2w, 4, W/4)
        )
        folded = 2 * w * height // 8
        self.head = nn.Sequential(
            nn.Conv1d(folded, 4 * w, 5, padding=2, bias=False), nn.BatchNorm1d(4 * w), nn.ReLU(inplace=True),
            nn.Conv1d(4 * w, 4 * w, 5, padding=2, bias=False), nn.BatchNorm1d(4 * w), nn.ReLU(inplace=True),
            nn.Conv1d(4 * w, num_classes + 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(f.flatten(1, 2))


def for_inference(model: nn.Module) -> nn.Module:
    """A copy for answering, not training: every BatchNorm2d folded into the convolution before it,
    and channels-last memory for convolution stacks. Same outputs (to float rounding); measured 4x the images per second
    of the plain `fast` model at batch 1,024 on 2 CPU cores (benchmarks/speed.py)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    fused = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
                fused += 1
    # Channels-last pays for stacks of convolutions (fast, deep); it slows the one-convolution seed.
    return model.to(memory_format=torch.channels_last) if fused > 1 else model
