"""The networks: EmoNet (a small residual VGG-style CNN on grey faces, 48x48 by default; fully convolutional,
so its weights work at any input size) and VGG-GAP, built from a :class:`~.config.TrainConfig`
(:func:`build_model`); the ensemble used to export several checkpoints as one model; and the input
normalisation the networks expect.
"""

from __future__ import annotations

import logging


from ...errors import EmoreelError
from ...types import EMOTIONS
from .config import F, MEAN, STD, TrainConfig, nn, require_torch, torch

log = logging.getLogger(__name__)


if torch is not None:

    class ConvBN(nn.Sequential):
        def __init__(self, cin: int, cout: int, k: int = 3):
            super().__init__(
                nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
            )

    class Stage(nn.Module):
        """Two 3x3 convs with a residual connection, then 2x2 max-pool."""

        def __init__(self, cin: int, cout: int, pool: bool):
            super().__init__()
            self.a = ConvBN(cin, cout)
            self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (
                nn.Identity()
                if cin == cout
                else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
            )
            self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

        def forward(self, x):
            return self.pool(F.relu(self.b(self.a(x)) + self.skip(x), inplace=True))

    class EmoNet(nn.Module):
        """Residual CNN: stem, one stage per width (pooling between), GAP, linear."""

        def __init__(self, widths=(32, 64, 128, 256), n_classes: int = 7, dropout: float = 0.3):
            super().__init__()
            self.stem = ConvBN(1, widths[0])
            stages, cin = [], widths[0]
            for i, w in enumerate(widths):
                stages.append(Stage(cin, w, pool=i < len(widths) - 1))
                cin = w
            self.stages = nn.Sequential(*stages)
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, n_classes))

        def forward(self, x):
            return self.head(self.stages(self.stem(x)))


    class VggGap(nn.Module):
        """VGG trunk: per width two 3x3 conv-BN-ReLU then 2x2 max-pool (not after the last), GAP, dropout, linear.

        With widths 64-128-256-512 on 40 px crops: 4.7 M parameters, the published FER2013 VGG recipe's size.
        """

        def __init__(self, widths=(64, 128, 256, 512), n_classes: int = len(EMOTIONS), dropout: float = 0.3):
            super().__init__()
            layers, cin = [], 1
            for i, w in enumerate(widths):
                layers += [ConvBN(cin, w), ConvBN(w, w)]
                if i < len(widths) - 1:
                    layers.append(nn.MaxPool2d(2))
                cin = w
            self.features = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, n_classes))

        def forward(self, x):
            return self.head(self.features(x))

    class CenterCrop(nn.Module):
        """The centre ``crop`` x ``crop`` of a larger input, then the wrapped network (what export writes)."""

        def __init__(self, net, size: int, crop: int):
            super().__init__()
            self.net, self.o, self.crop = net, (size - crop) // 2, crop

        def forward(self, x):
            return self.net(x[:, :, self.o : self.o + self.crop, self.o : self.o + self.crop])


ARCHS = ("emonet", "vgg")


def build_model(cfg: TrainConfig, n_classes: int = len(EMOTIONS)):
    require_torch()
    if cfg.arch == "vgg":
        return VggGap(tuple(cfg.widths), n_classes, cfg.dropout)
    if cfg.arch != "emonet":
        raise EmoreelError(f"unknown architecture {cfg.arch!r}; choose from {', '.join(ARCHS)}")
    return EmoNet(tuple(cfg.widths), n_classes, cfg.dropout)


def centre_crop(x: "torch.Tensor", crop: int) -> "torch.Tensor":
    o = (x.shape[2] - crop) // 2
    return x[:, :, o : o + crop, o : o + crop]


def normalise(x_uint8: "torch.Tensor") -> "torch.Tensor":
    """uint8 (B, H, W) -> float (B, 1, H, W) normalised as in the model card."""
    return ((x_uint8.float() / 255.0) - MEAN).div_(STD).unsqueeze(1)


if torch is not None:

    class Ensemble(nn.Module):
        """Members' log-probabilities averaged: its output is a logit vector (softmax gives the ensemble)."""

        def __init__(self, members):
            super().__init__()
            self.members = nn.ModuleList(members)

        def forward(self, x):
            return torch.stack([F.log_softmax(m(x), 1) for m in self.members]).mean(0)
