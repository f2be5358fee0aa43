"""The training loop (:func:`train`): keeps the whole data set in memory as uint8 and augments
batches on the fly with vectorised affine warps, so it needs no DataLoader workers and runs
the same on CPU or CUDA; optional distillation from an exported teacher. A checkpoint is
written after every epoch (:mod:`.checkpoints`); ``resume=True`` continues from it with the
same schedule and RNG state.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ...errors import EmoreelError
from ...types import EMOTIONS
from ..datasets import LabelledFaces
from ..emotion import Standardize
from .architectures import build_model, centre_crop, normalise
from .checkpoints import atomic_torch_save, float_state, half_state, init_from_onnx, load_checkpoint
from .config import F, TrainConfig, nn, require_torch, torch

log = logging.getLogger(__name__)


def random_crop(x: "torch.Tensor", crop: int, gen: "torch.Generator") -> "torch.Tensor":
    """A random ``crop`` x ``crop`` patch of each image of a (B, C, H, W) batch."""
    b, _, h, w = x.shape
    oy = torch.randint(0, h - crop + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, w - crop + 1, (b,), generator=gen).to(x.device)
    ar = torch.arange(crop, device=x.device)
    rows, cols = (oy[:, None] + ar)[:, :, None], (ox[:, None] + ar)[:, None, :]
    return x[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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

    The faces must be ``cfg.size`` px square (a resumed run: the checkpoint's size). ``init`` starts
    from another checkpoint's or exported EmoNet's weights (same architecture and widths; any input
    size, the networks being fully convolutional) with a fresh optimiser and schedule; its command,
    epochs, val accuracy and size are recorded.
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
        model.load_state_dict(src_model.state_dict())  # no weight depends on the input size
        data["init"] = {
            "checkpoint": str(init),
            "command": src_ck.get("command", ""),
            "resume_commands": list(src_ck.get("resume_commands", [])),
            "epochs": int(src_ck.get("epoch", -1)) + 1,
            "val_acc": round(float(src_ck["val_acc"]), 4) if "val_acc" in src_ck else None,
            "size": int(src_cfg.size),
        }
        log.info("initialised from %s (trained at %d px, now %d px)", init, src_cfg.size, cfg.size)
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
        model.load_state_dict(float_state(ck["model"]))
        opt.load_state_dict(float_state(ck["optimizer"]))
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
    for what, d in (("training", train_data), ("validation", val_data)):
        if tuple(d.images.shape[1:]) != (cfg.size, cfg.size):
            raise EmoreelError(f"{what} faces are {'x'.join(map(str, d.images.shape[1:]))} px, the run's are "
                               f"{cfg.size}x{cfg.size}: load them at {cfg.size} px")  # fmt: skip
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
        pack = half_state if cfg.compact else (lambda v: v)
        if val_acc > best[1]:
            best = (epoch + 1, val_acc)
            atomic_torch_save(
                {"model": pack(model.state_dict()), "config": asdict(cfg), "epoch": epoch, "val_acc": val_acc, "command": command,
                 "resume_commands": resume_commands, "data": data},
                out / "best.pt",
            )
        atomic_torch_save(
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
