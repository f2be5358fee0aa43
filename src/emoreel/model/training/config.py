"""What describes a training run: :class:`TrainConfig` (every knob; stored in checkpoints and the
model card), the input convention shared with the exported model (FER2013's eye and landmark
positions), the command line that made a run, and whether PyTorch (``emoreel[train]``) is here.
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass, fields


from ...errors import EmoreelError

try:  # torch is an optional extra
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - exercised only without the extra
    torch = nn = F = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


MEAN, STD = 0.5, 0.25  # input normalisation: x = (pixel / 255 - MEAN) / STD


FER_EYES = ((0.315, 0.41), (0.685, 0.41))  # measured eye positions in FER2013 crops (see the model card)


# eyes, nose tip, mouth corners in FER2013 crops: medians of CenterFace landmarks on 918 of 1,000 random
# training faces (seed 0, upscaled to 192 px), made symmetric; the eyes kept at FER_EYES
FER_LANDMARKS = ((0.315, 0.41), (0.685, 0.41), (0.5, 0.604), (0.352, 0.755), (0.648, 0.755))


def require_torch() -> None:
    if torch is None:
        raise EmoreelError("training needs PyTorch: pip install 'emoreel[train]' (or torch==2.13.0 for the CPU build)")


@dataclass
class TrainConfig:
    """Every knob of a training run; stored in checkpoints and the model card."""

    epochs: int = 60
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    class_weight_power: float = 0.3  # loss weight ~ (1/freq)^power; 0 = unweighted
    widths: tuple[int, ...] = (32, 64, 128, 256)
    dropout: float = 0.3
    rotate_deg: float = 12.0
    scale: float = 0.12
    shift: float = 0.10
    erase_p: float = 0.4
    seed: int = 0
    size: int = 48  # input side in px (--size); the weights do not depend on it, so --init crosses sizes
    threads: int = 0  # 0 = torch default
    standardize: bool = False  # per-face contrast normalisation (emotion.Standardize) of every image, as at run time
    degrade_p: float = 0.0  # probability of each real-video degradation per image (emoreel.model.degrade), 0 = off
    yaw_deg: float = 0.0  # simulated head turn up to this many degrees (horizontal squeeze + perspective), 0 = off
    mixup: float = 0.0  # mixup Beta(a, a) parameter, 0 = off
    arch: str = "emonet"  # emonet (residual, 1.2 M parameters) or vgg (VGG trunk + global average pool)
    crop: int = 0  # train on random crop x crop patches of the size-px faces (0 = whole face); the model sees crop px
    images: int = 0  # length of the schedule in training images seen (0 = epochs x training set); spans machines
    compact: bool = False  # checkpoints with float16 weights and optimizer state (half the size, to commit to git)
    distill: str = ""  # teacher: an exported ONNX model whose test-time-view average each training face also learns
    distill_views: str = "jitter"  # the teacher's views (emoreel.model.emotion.VIEWS), on the clean training face
    distill_weight: float = 0.5  # share of the distillation loss (the rest: cross-entropy with the labels)
    distill_temp: float = 2.0  # softening temperature of teacher and student in the distillation loss

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from a checkpoint, ignoring keys this version no longer has."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def command_line() -> str:
    """This process's command line as ``emoreel ...``, shell-quoted so it can be run again."""
    return shlex.join(["emoreel", *sys.argv[1:]])


def data_from_command(command: str) -> dict:
    """The training data named in an ``emoreel train`` command (checkpoints older than their ``data`` key)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return {}
    opts = {"--data": None, "--train-split": "train", "--val-split": "val"}
    for i, a in enumerate(argv):
        key, eq, val = a.partition("=")
        if key in opts:
            if eq:
                opts[key] = val
            elif i + 1 < len(argv):
                opts[key] = argv[i + 1]
    if not opts["--data"]:
        return {}
    return {"train": f"{opts['--data']} [{opts['--train-split']}]", "val": f"{opts['--data']} [{opts['--val-split']}]"}
