"""Train, checkpoint and export emoreel's facial-emotion CNN (needs ``emoreel[train]``).

The network is a small residual VGG-style CNN on 48x48 grey faces. Training
keeps the whole data set in memory as uint8 and augments batches on the fly
with vectorised affine warps, so it needs no DataLoader workers and runs the
same on CPU or CUDA. A checkpoint is written atomically after every epoch;
``resume=True`` continues from it with the same schedule and RNG state.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import pickle
import platform
import random
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..datasets import LabelledFaces
from ..emotion import Standardize
from ...types import EMOTIONS
from ...errors import EmoreelError, ModelError

try:  # torch is an optional extra
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - exercised only without the extra
    torch = None  # type: ignore[assignment]

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
    size: int = 48
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


def random_crop(x: "torch.Tensor", crop: int, gen: "torch.Generator") -> "torch.Tensor":
    """A random ``crop`` x ``crop`` patch of each image of a (B, C, H, W) batch."""
    b, _, h, w = x.shape
    oy = torch.randint(0, h - crop + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, w - crop + 1, (b,), generator=gen).to(x.device)
    ar = torch.arange(crop, device=x.device)
    rows, cols = (oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]
    return x[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def centre_crop(x: "torch.Tensor", crop: int) -> "torch.Tensor":
    o = (x.shape[2] - crop) // 2
    return x[:, :, o : o + crop, o : o + crop]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def normalise(x_uint8: "torch.Tensor") -> "torch.Tensor":
    """uint8 (B, H, W) -> float (B, 1, H, W) normalised as in the model card."""
    return ((x_uint8.float() / 255.0) - MEAN).div_(STD).unsqueeze(1)


def augment(x: "torch.Tensor", cfg: TrainConfig, gen: "torch.Generator") -> "torch.Tensor":
    """Random flip, rotation, scale, shift, brightness/contrast and erasing, batched."""
    b, dev = x.shape[0], x.device

    def u(lo, hi, n=b):
        return torch.rand(n, generator=gen, device="cpu").to(dev) * (hi - lo) + lo

    ang = u(-cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
    sc = 1.0 + u(-cfg.scale, cfg.scale)
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    tx, ty = u(-cfg.shift, cfg.shift) * 2, u(-cfg.shift, cfg.shift) * 2
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if cfg.yaw_deg > 0:  # a turned head, as 5-point alignment crops it: narrower, the far side smaller
        yaw = u(-cfg.yaw_deg, cfg.yaw_deg) * math.pi / 180
        squeeze = torch.cos(yaw).view(b, 1, 1)
        persp = (0.35 * torch.sin(yaw)).view(b, 1, 1)
        gx, gy = grid[..., 0], grid[..., 1]
        grid = torch.stack([gx / squeeze, gy * (1 + persp * gx)], -1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # brightness / contrast in normalised units
    c = u(0.7, 1.3).view(b, 1, 1, 1)
    m = x.mean(dim=(2, 3), keepdim=True)
    x = (x - m) * c + m + u(-0.4, 0.4).view(b, 1, 1, 1)
    if cfg.erase_p > 0:
        h, w = x.shape[2:]
        area = u(0.02, 0.2)
        ar = torch.exp(u(math.log(0.3), math.log(3.3)))
        eh = (torch.sqrt(area * ar) * h).clamp(1, h - 1)
        ew = (torch.sqrt(area / ar) * w).clamp(1, w - 1)
        y0 = u(0, 1) * (h - eh)
        x0 = u(0, 1) * (w - ew)
        yy = torch.arange(h, device=dev).view(1, h, 1)
        xx = torch.arange(w, device=dev).view(1, 1, w)
        mask = (yy >= y0.view(b, 1, 1)) & (yy < (y0 + eh).view(b, 1, 1)) & (xx >= x0.view(b, 1, 1)) & (
            xx < (x0 + ew).view(b, 1, 1)
        )
        mask &= (u(0, 1) < cfg.erase_p).view(b, 1, 1)
        x = torch.where(mask.unsqueeze(1), torch.zeros_like(x), x)
    return x


def prepare_batch(images: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """A uint8 training batch as the runtime would see it: degraded (``degrade_p``), then standardized."""
    if cfg.degrade_p > 0:
        from ..degrade import Degrade

        images = Degrade(cfg.degrade_p)(images, rng)
    if cfg.standardize:
        images = np.rint(Standardize().apply(images)).astype(np.uint8)
    return images


def class_weights(labels: np.ndarray, n: int, power: float) -> np.ndarray:
    counts = np.bincount(labels, minlength=n).astype(np.float64)
    w = (counts.sum() / np.maximum(counts, 1) / n) ** power
    return (w / (w * counts).sum() * counts.sum()).astype(np.float32)


@torch.no_grad() if torch is not None else (lambda f: f)
def predict_logits(model, images: np.ndarray, device="cpu", batch: int = 512, tta: bool = False, crop: int = 0) -> np.ndarray:
    """Logits for uint8 (N, H, W) images (their centre ``crop`` when set), optionally averaged with the mirror."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = normalise(torch.from_numpy(images[i : i + batch]).to(device))
        if crop:
            x = centre_crop(x, crop)
        y = model(x)
        if tta:
            y = (y.softmax(1) + model(torch.flip(x, dims=[3])).softmax(1)).log()
        out.append(y.float().cpu().numpy())
    return np.concatenate(out)


def teacher_targets(teacher: str | Path, images: np.ndarray, views: str = "jitter") -> np.ndarray:
    """A teacher model's class probabilities (N, len(EMOTIONS), in EMOTIONS' order) for grey training faces.

    The teacher is an exported ONNX model with its card, run as at analyze time (its own preprocessing and
    temperature) and averaged over all of ``views`` (``emoreel.model.emotion.VIEWS``; every view, not a selection).
    """
    from ..emotion import VIEWS, EmotionModel, resolve_model

    model = EmotionModel(resolve_model(teacher), threads=torch.get_num_threads() if torch is not None else 1)
    missing = [c for c in EMOTIONS if c not in model.classes]
    if missing:
        raise EmoreelError(f"teacher {teacher} lacks classes {', '.join(missing)}")
    order = [model.classes.index(c) for c in EMOTIONS]
    return model.predict(list(images), VIEWS[views])[:, order].astype(np.float32)  # in bounded batches


def distill_loss(logits: "torch.Tensor", teacher_p: "torch.Tensor", temp: float) -> "torch.Tensor":
    """Hinton's distillation loss: KL(teacher || student) at temperature ``temp``, scaled by temp^2.

    ``teacher_p`` are probabilities; softened as ``softmax(log p / temp)``.
    """
    soft = F.softmax(torch.log(teacher_p.clamp_min(1e-8)) / temp, dim=1)
    return F.kl_div(F.log_softmax(logits / temp, dim=1), soft, reduction="batchmean") * temp * temp


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _cast(state, src: "torch.dtype", dst: "torch.dtype"):
    """A state dict (or optimizer state, nested) with its ``src`` tensors stored as ``dst``."""
    if isinstance(state, dict):
        return {k: _cast(v, src, dst) for k, v in state.items()}
    if isinstance(state, list):
        return [_cast(v, src, dst) for v in state]
    if torch.is_tensor(state) and state.dtype == src:
        return state.to(dst)
    return state


def _half(state):
    """float32 tensors of a (nested) state stored as float16: compact checkpoints."""
    return _cast(state, torch.float32, torch.float16)


def _float(state):
    """float16 tensors of a (nested) state back to float32."""
    return _cast(state, torch.float16, torch.float32)


def _lr_at(step: float, total: float, warm: float, base: float) -> float:
    if step < warm:
        return base * (0.1 + 0.9 * step / max(warm, 1e-9))
    p = (step - warm) / max(total - warm, 1e-9)
    return base * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    best_epoch: int
    best_val_acc: float
    history: list[EpochLog] = field(default_factory=list)
    checkpoint: str = ""


def train(
    train_data: LabelledFaces,
    val_data: LabelledFaces,
    out_dir: str | Path,
    cfg: TrainConfig | None = None,
    resume: bool = False,
    device: str | None = None,
    command: str = "",
    on_epoch=None,
    init: str | Path | None = None,
) -> TrainResult:
    """Train a model; writes ``last.pt``, ``best.pt`` and ``history.json`` to ``out_dir``.

    ``init`` starts from another checkpoint's weights (same widths) with a fresh
    optimiser and schedule; its command, epochs and val accuracy are recorded.
    """
    require_torch()
    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    model = build_model(cfg).to(device)
    if device == "cpu":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    weights = torch.from_numpy(class_weights(train_data.labels, len(EMOTIONS), cfg.class_weight_power)).to(device)
    crit = nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)
    gen = torch.Generator().manual_seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)  # degradations (NumPy/OpenCV, on the CPU)
    start_epoch, history, best = 0, [], (-1, -1.0)
    data = {"train": train_data.source, "n_train": len(train_data), "val": val_data.source, "n_val": len(val_data)}
    resume_commands: list[str] = []
    was_distill = None  # the resumed run's teacher
    last = out / "last.pt"
    if init is not None and str(init).lower().endswith(".onnx") and not (resume and last.exists()):
        data["init"] = init_from_onnx(model, init, train_data.images, cfg)
        log.info("initialised from %s", init)
    elif init is not None and not (resume and last.exists()):
        src_model, src_cfg, src_ck = load_checkpoint(init)
        if tuple(src_cfg.widths) != tuple(cfg.widths) or src_cfg.arch != cfg.arch:
            raise EmoreelError(f"{init}: checkpoint is {src_cfg.arch} with widths {tuple(src_cfg.widths)}, not {cfg.arch} with widths {tuple(cfg.widths)}")
        model.load_state_dict(src_model.state_dict())
        data["init"] = {
            "checkpoint": str(init),
            "command": src_ck.get("command", ""),
            "resume_commands": list(src_ck.get("resume_commands", [])),
            "epochs": int(src_ck.get("epoch", -1)) + 1,
            "val_acc": round(float(src_ck["val_acc"]), 4) if "val_acc" in src_ck else None,
        }
        log.info("initialised from %s", init)
    if resume and last.exists():
        # on the CPU: the RNG states must stay CPU tensors; load_state_dict moves the rest to the model's device
        ck = torch.load(last, map_location="cpu", weights_only=False)
        saved = TrainConfig.from_dict({**asdict(cfg), **ck["config"]})
        if tuple(saved.widths) != tuple(cfg.widths) or saved.arch != cfg.arch:
            raise EmoreelError(f"{last}: checkpoint is {saved.arch} with widths {tuple(saved.widths)}, not {cfg.arch} with widths {tuple(cfg.widths)}")
        was_teacher = ck["config"].get("distill", "")  # "" also for runs from before distillation
        if cfg.distill and not was_teacher:
            raise EmoreelError(f"{last}: the run was not distilled; a resume cannot add distillation")
        # everything from the checkpoint but the length of the run (and the device's batch size); the teacher
        # where it is now, if given (the same file: its sha256 is checked below)
        cfg = replace(saved, epochs=cfg.epochs, images=cfg.images or saved.images, threads=cfg.threads,
                      batch_size=cfg.batch_size, distill=cfg.distill or was_teacher)
        model.load_state_dict(_float(ck["model"]))
        opt.load_state_dict(_float(ck["optimizer"]))
        gen.set_state(ck["generator"])
        if "np_rng" in ck:
            np_rng.bit_generator.state = ck["np_rng"]
        torch.set_rng_state(ck["torch_rng"])
        start_epoch = ck["epoch"] + 1
        history = [EpochLog(**h) for h in ck["history"]]
        best = tuple(ck["best"])
        resume_commands = list(ck.get("resume_commands", []))
        if "init" in ck.get("data", {}):
            data["init"] = ck["data"]["init"]  # where the interrupted run started from
        was_distill = ck.get("data", {}).get("distill")
        if command and command != ck.get("command", command):
            resume_commands.append(command)
        command = ck.get("command", command)
        log.info("resumed from %s at epoch %d", last, start_epoch)
    train_images, val_images = train_data.images, val_data.images
    if cfg.standardize:  # the images as the runtime will see them (training batches: after degradation)
        val_images = np.rint(Standardize().apply(val_images)).astype(np.uint8)
    y_train = torch.from_numpy(train_data.labels).to(device)
    n = len(y_train)
    t_train = None
    if cfg.distill:  # soft targets of the clean faces (the teacher over all its views), once per run or resume
        from ..emotion import resolve_model, sha256_file

        if not (0 < cfg.distill_temp < math.inf) or not 0 <= cfg.distill_weight <= 1:
            raise EmoreelError(f"distillation needs a finite temperature > 0 and a weight in [0, 1] (got {cfg.distill_temp}, {cfg.distill_weight})")
        if cfg.distill_views not in ("mirror", "jitter"):
            raise EmoreelError(f"distillation views must be mirror or jitter (got {cfg.distill_views!r})")
        teacher = resolve_model(cfg.distill)
        if not teacher.is_file() and was_distill and Path(was_distill.get("path", "")).is_file():
            teacher = Path(was_distill["path"])  # the teacher where the run started, by absolute path
        if not teacher.is_file():
            raise EmoreelError(f"teacher model {cfg.distill} not found" + (" (give it with --distill PATH)" if was_distill else ""))
        sha = sha256_file(teacher)
        if (was_distill or {}).get("sha256", sha) != sha:
            raise EmoreelError(f"{teacher} is not the teacher this run started with (sha256 {was_distill['sha256'][:12]}…)")
        t0 = time.perf_counter()
        t_train = torch.from_numpy(teacher_targets(teacher, train_images, cfg.distill_views)).to(device)
        data["distill"] = {"teacher": str(cfg.distill), "path": str(teacher.resolve()), "sha256": sha,
                           "views": cfg.distill_views, "weight": cfg.distill_weight, "temp": cfg.distill_temp,
                           "teacher_train_acc": round(float((t_train.argmax(1) == y_train).float().mean()), 4)}
        log.info("teacher targets for %d faces in %.0f s", n, time.perf_counter() - t0)
    steps_per_epoch = max(1, n // cfg.batch_size)
    per_epoch = steps_per_epoch * cfg.batch_size  # images seen per epoch
    # the schedule runs in images seen, so a run may change machines (and batch sizes) on the way
    total_images = cfg.images or cfg.epochs * per_epoch
    epochs = math.ceil(total_images / per_epoch)
    cfg = replace(cfg, epochs=epochs)
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        # summed on the device: no host sync per step
        tot_loss = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for i in range(steps_per_epoch):
            seen_images = (epoch * steps_per_epoch + i) * cfg.batch_size
            lr = _lr_at(seen_images, total_images, cfg.warmup_epochs * per_epoch, cfg.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            batch = prepare_batch(train_images[idx.numpy()], cfg, np_rng)
            xb = augment(normalise(torch.from_numpy(batch).to(device)), cfg, gen)
            if cfg.crop:
                xb = random_crop(xb, cfg.crop, gen)
            yb = y_train[idx.to(device)]
            if device == "cpu":
                xb = xb.contiguous(memory_format=torch.channels_last)
            if cfg.mixup > 0:
                lam = float(np_rng.beta(cfg.mixup, cfg.mixup))
                mix = torch.randperm(len(idx), generator=gen).to(device)
                logits = model(lam * xb + (1 - lam) * xb[mix])
                loss = lam * crit(logits, yb) + (1 - lam) * crit(logits, yb[mix])
            else:
                logits = model(xb)
                loss = crit(logits, yb)
            if t_train is not None:
                tb = t_train[idx.to(device)]
                if cfg.mixup > 0:
                    tb = lam * tb + (1 - lam) * tb[mix]
                loss = (1 - cfg.distill_weight) * loss + cfg.distill_weight * distill_loss(logits, tb, cfg.distill_temp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.detach().double() * len(idx)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(idx)
        val_logits = predict_logits(model, val_images, device, crop=cfg.crop)
        vl = torch.from_numpy(val_logits)
        val_loss = float(F.cross_entropy(vl, torch.from_numpy(val_data.labels)))
        val_acc = float((vl.argmax(1).numpy() == val_data.labels).mean())
        entry = EpochLog(epoch + 1, float(tot_loss) / seen, int(correct) / seen, val_loss, val_acc, lr, time.perf_counter() - t0)
        history.append(entry)
        pack = _half if cfg.compact else (lambda v: v)
        if val_acc > best[1]:
            best = (epoch + 1, val_acc)
            _atomic_torch_save(
                {"model": pack(model.state_dict()), "config": asdict(cfg), "epoch": epoch, "val_acc": val_acc, "command": command,
                 "resume_commands": resume_commands, "data": data},
                out / "best.pt",
            )
        _atomic_torch_save(
            {
                "model": pack(model.state_dict()),
                "optimizer": pack(opt.state_dict()),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "np_rng": np_rng.bit_generator.state,
                "config": asdict(cfg),
                "epoch": epoch,
                "history": [asdict(h) for h in history],
                "best": list(best),
                "command": command,
                "resume_commands": resume_commands,
                "data": data,
            },
            last,
        )
        (out / "history.json").write_text(
            json.dumps({"config": asdict(cfg), "command": command, "resume_commands": resume_commands, "data": data,
                        "history": [asdict(h) for h in history]}, indent=1)
        )
        if on_epoch:
            on_epoch(entry, epochs)
    return TrainResult(best[0], best[1], history, str(out / "best.pt"))


def _conv_bn_pairs(model) -> list:
    """(conv, batchnorm) pairs of an EmoNet in the order its ONNX export lists its Conv nodes."""
    pairs = [(model.stem[0], model.stem[1])]
    for st in model.stages:
        pairs += [(st.a[0], st.a[1]), (st.b[0], st.b[1])]
        if not isinstance(st.skip, nn.Identity):
            pairs.append((st.skip[0], st.skip[1]))
    return pairs


@torch.no_grad() if torch is not None else (lambda f: f)
def init_from_onnx(model, onnx_path: str | Path, images: np.ndarray, cfg: TrainConfig, n_stats: int = 2048) -> dict:
    """Load an exported EmoNet's weights (BatchNorm folded into the convolutions) into ``model``.

    Each BatchNorm is rebuilt from the statistics of its input on ``n_stats``
    training images, so the network computes exactly the exported function in
    eval mode and nearly the same in training mode. Returns the provenance entry.
    """
    import onnx
    from onnx import numpy_helper

    from ..emotion import read_card, sha256_file

    if cfg.arch != "emonet":
        raise EmoreelError(f"--init from an exported .onnx works for EmoNet only, not {cfg.arch}: start from a checkpoint")
    card = read_card(onnx_path)
    if "quantization" in card:
        raise EmoreelError(f"{onnx_path} is an int8 model: start from its float source")
    m = onnx.load(str(onnx_path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    pairs = _conv_bn_pairs(model)
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"]
    if len(convs) != len(pairs) or len(gemm) != 1:
        raise EmoreelError(f"{onnx_path}: not an EmoNet with widths {tuple(cfg.widths)}")
    for node, (conv, bn) in zip(convs, pairs):
        w, b = inits[node.input[1]], inits[node.input[2]]
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise EmoreelError(f"{onnx_path}: not an EmoNet with widths {tuple(cfg.widths)}")
        conv.weight.copy_(torch.from_numpy(w.copy()))
        bn.weight.fill_(1.0)
        bn.bias.copy_(torch.from_numpy(b.copy()))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # y = x + b in eval mode
    lin = model.head[-1]
    lin.weight.copy_(torch.from_numpy(inits[gemm[0].input[1]].copy()))
    lin.bias.copy_(torch.from_numpy(inits[gemm[0].input[2]].copy()))
    # BatchNorm statistics of each layer's input (eval mode: every layer already computes the exported function)
    stats: dict = {}

    def hook(key):
        def fn(mod, inp, out):
            t = inp[0].detach().float()
            stats[key] = (t.mean(dim=(0, 2, 3)), t.var(dim=(0, 2, 3), unbiased=False))
        return fn

    hooks = [bn.register_forward_hook(hook(k)) for k, (_, bn) in enumerate(pairs)]
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(images), size=min(n_stats, len(images)), replace=False)
    x = images[np.sort(pick)]
    if cfg.standardize:
        x = np.rint(Standardize().apply(x)).astype(np.uint8)
    model.eval()
    model(normalise(torch.from_numpy(x).to(next(model.parameters()).device)))
    for h in hooks:
        h.remove()
    for k, (_, bn) in enumerate(pairs):
        mu, var = stats[k]
        bn.running_mean.copy_(mu)
        bn.running_var.copy_(var)
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.add_(mu)
    ev = card.get("evaluation", {})
    return {"model": str(onnx_path), "sha256": sha256_file(onnx_path), "command": card.get("training", {}).get("command", ""),
            "val_acc": ev.get("val_accuracy")}


def checkpoint_config(out_dir: str | Path) -> dict | None:
    """The config of the run in ``out_dir`` (its ``last.pt``), or None without a checkpoint."""
    last = Path(out_dir) / "last.pt"
    if not last.exists():
        return None
    require_torch()
    try:
        return dict(torch.load(last, map_location="cpu", weights_only=False)["config"])
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as e:
        raise ModelError(f"{last}: not a readable emoreel checkpoint ({type(e).__name__})") from None


def checkpoint_epochs(out_dir: str | Path) -> int | None:
    """The planned number of epochs of the run in ``out_dir`` (None without a checkpoint)."""
    cfg = checkpoint_config(out_dir)
    return None if cfg is None else int(cfg["epochs"])


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """Return ``(model, config, checkpoint dict)`` from a ``best.pt``/``last.pt``."""
    require_torch()
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
        cfg = TrainConfig.from_dict(ck["config"])
        model = build_model(cfg)
        model.load_state_dict(_float(ck["model"]))
    except FileNotFoundError:
        raise ModelError(f"checkpoint {path} not found") from None
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, AttributeError, pickle.UnpicklingError) as e:
        raise ModelError(f"{path}: not a readable emoreel checkpoint ({type(e).__name__})") from None
    model.eval()
    return model, cfg, ck


if torch is not None:

    class Ensemble(nn.Module):
        """Members' log-probabilities averaged: its output is a logit vector (softmax gives the ensemble)."""

        def __init__(self, members):
            super().__init__()
            self.members = nn.ModuleList(members)

        def forward(self, x):
            return torch.stack([F.log_softmax(m(x), 1) for m in self.members]).mean(0)


def _training_card(ck: dict, cfg: TrainConfig) -> dict:
    return {
        "command": ck.get("command", ""),
        **({"resume_commands": ck["resume_commands"]} if ck.get("resume_commands") else {}),
        "data": ck.get("data") or data_from_command(ck.get("command", "")),
        "epochs_trained": int(ck["epoch"]) + 1,
        "epochs_planned": int(cfg.epochs),
        "checkpoint_val_acc": round(float(ck["val_acc"]), 4) if "val_acc" in ck else None,
        "config": ck["config"],
    }


def export_onnx(checkpoint: str | Path | list, onnx_path: str | Path, card_extra: dict | None = None,
                standardize: bool = False) -> Path:  # fmt: skip
    """Export a checkpoint (or several, as one ensemble) to ONNX (dynamic batch) with its model card.

    An ensemble averages its members' log-probabilities; they must share the input size and
    whether they were trained on standardized faces. A checkpoint trained with
    ``standardize`` gets it in its card; ``standardize=True`` adds it to one trained without
    (the card says so). The card's accuracy fields are filled by
    :func:`emoreel.model.evaluate.write_card_metrics`.
    """
    paths = list(checkpoint) if isinstance(checkpoint, (list, tuple)) else [checkpoint]
    if not paths:
        raise EmoreelError("export needs at least one checkpoint")
    loaded = [load_checkpoint(p) for p in paths]
    model, cfg, ck = loaded[0]
    if any((c.size, c.crop) != (cfg.size, cfg.crop) for _, c, _ in loaded):
        raise EmoreelError("ensemble members must share the input size and crop")
    if any(c.standardize != cfg.standardize for _, c, _ in loaded):
        raise EmoreelError("ensemble members must all be trained with --standardize, or all without")
    if len(loaded) > 1:
        model = Ensemble([m for m, _, _ in loaded]).eval()
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    side = cfg.crop or cfg.size  # a crop-trained network sees crop x crop patches of the aligned face
    dummy = torch.zeros(1, 1, side, side)
    tmp = onnx_path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():  # the legacy TorchScript exporter: no onnxscript needed, runs on torch 2.4-2.13
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            dummy,
            str(tmp),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, onnx_path)
    from ..emotion import write_card

    env = {"torch": torch.__version__, "python": platform.python_version(),
           "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    kind = {"emonet": "EmoNet (residual VGG-style CNN)", "vgg": "VGG trunk + global average pool"}
    if len(loaded) == 1:
        architecture = {"type": kind[cfg.arch], "arch": cfg.arch, "widths": list(cfg.widths)}
        training = {**_training_card(ck, cfg), **env}
    else:
        architecture = {"type": f"ensemble of {len(loaded)} EmoNet (mean of log-probabilities)",
                        "members": [{"widths": list(c.widths)} for _, c, _ in loaded]}
        training = {"members": [{"checkpoint": str(p), **_training_card(k, c)} for p, (_, c, k) in zip(paths, loaded)],
                    **env}
    card = {
        "name": onnx_path.stem,
        "classes": list(EMOTIONS),
        "input": {
            "name": "input",
            "size": [side, side],
            **({"crop": {"from": [cfg.size, cfg.size],
                         "note": "faces are aligned at 'from' size; the network sees the centre crop, or with "
                                 "test-time augmentation the centre and four corner crops and their mirrors"}}
               if cfg.crop else {}),  # fmt: skip
            "colour": "grey",
            "layout": "NCHW",
            "dtype": "float32",
            "scale": 1 / 255,
            "mean": [MEAN],
            "std": [STD],
            **({"standardize": {**Standardize().to_card(), "in_training": cfg.standardize}}
               if cfg.standardize or standardize else {}),  # fmt: skip
        },
        "output": {"name": "logits", "kind": "logits"},
        "face": {
            "eyes": [list(e) for e in FER_EYES],
            "landmarks": [list(p) for p in FER_LANDMARKS],
            "note": "where the eyes sit in FER2013 faces (fractions of width, height): the median of CenterFace "
            "landmarks on 917 of 1,000 random training images (upscaled to 192 px), made level and symmetric; "
            "landmarks: eyes, nose tip, mouth corners measured the same way (918 of 1,000, seed 0); "
            "emoreel.faces.align fits video faces to the 5 points (eyes only when a landmark is missing)",
        },
        "architecture": architecture,
        "training": training,
    }
    if card_extra:
        card.update(card_extra)
    write_card(onnx_path, card)
    return onnx_path


def reexport_onnx(model: str | Path, onnx_path: str | Path, standardize: bool = False) -> Path:
    """Copy an exported emoreel ONNX model under a new name with a fresh card; needs no torch.

    For a model whose checkpoint is gone: the weights (and so the file's bytes)
    stay as they are, the card keeps the source's input, training and
    architecture entries, drops its accuracy (evaluate the copy to record it)
    and says where the copy came from. ``standardize=True`` adds per-face
    contrast normalisation at run time, marked ``in_training: false`` unless
    the source already had it. An int8 model cannot be the source: re-export
    the float model and quantize that.
    """
    from ..emotion import EmotionModel, read_card, write_card

    src, out = Path(model), Path(onnx_path)
    if not src.is_file():
        raise ModelError(f"model {src} not found")
    if src.resolve() == out.resolve():
        raise EmoreelError(f"{out} is the source model: write the copy somewhere else")
    fp32 = EmotionModel(src)  # fails clearly on a file that is not an emoreel model
    card = read_card(src)
    if "quantization" in card:
        raise EmoreelError(f"{src} is an int8 model: re-export its float source ({card['quantization']['from']['file']})")
    for key in ("evaluation", "file", "sha256"):
        card.pop(key, None)
    card["name"] = out.stem
    if standardize and "standardize" not in card["input"]:
        card["input"]["standardize"] = {**Standardize().to_card(), "in_training": False}
    card["reexported"] = {
        "from": {"file": src.name, "sha256": fp32.sha256},
        "command": command_line(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, out)
    write_card(out, card)
    return out


def quantize_int8(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray, seed: int = 0,
                  n_calib: int = 512) -> Path:
    """Write an int8 copy of an emotion model (static QDQ) with its card; needs no torch.

    Weights are quantized per output channel (int8, 7-bit range so that CPUs
    without VNNI cannot saturate), activations to uint8 with ranges set at the
    99.999th percentile of ``n_calib`` faces drawn (with ``seed``) from
    ``calibration`` (uint8 grey crops at the model's input size: training data,
    never the split the card reports). The card is the float model's plus a
    ``quantization`` entry; evaluate the result to record its own accuracy.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..emotion import EmotionModel, read_card, write_card

    src, out = Path(onnx_path), Path(out_path)
    fp32 = EmotionModel(src)
    rng = np.random.default_rng(seed)
    n = min(n_calib, len(calibration))
    bs = min(64, n)
    n -= n % bs  # onnxruntime's histogram calibrators need equal batches
    pick = rng.choice(len(calibration), size=n, replace=False)
    x = np.ascontiguousarray(fp32._patches(fp32.preprocess(list(calibration[np.sort(pick)])), tta=False)[0])
    batches = iter([{fp32.input_name: x[i : i + bs]} for i in range(0, n, bs)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    pre = out.with_suffix(".pre.tmp.onnx")
    tmp = out.with_suffix(".tmp.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        with contextlib.redirect_stdout(sys.stderr):  # the calibrator prints its settings
            quantize_static(
                str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
            )
        onnx.checker.check_model(str(tmp))
        os.replace(tmp, out)
    finally:
        for f in (pre, tmp, Path(str(pre) + ".data")):
            f.unlink(missing_ok=True)
    import onnxruntime

    card = read_card(src)
    card.pop("evaluation", None)  # the int8 file gets its own numbers
    card["name"] = out.stem
    card["quantization"] = {
        "from": {"file": src.name, "sha256": fp32.sha256},
        "method": "onnxruntime static QDQ: int8 per-channel weights (reduce_range), uint8 activations",
        "calibration": f"{len(pick)} faces drawn with seed {seed} from the training data, percentile 99.999",
        "onnxruntime": onnxruntime.__version__,
    }
    write_card(out, card)
    return out


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
