"""`emoreel train`: train the emotion CNN."""

from __future__ import annotations

import sys


def register(sub) -> None:
    t = sub.add_parser("train", help="train the emotion CNN (needs emoreel[train])",
                       description="Train emoreel's emotion CNN on grey faces, 48x48 unless --size (fer2013.csv, or a "
                       "folder/zip of <split>/<class>/ images). Writes OUT/best.pt (best val accuracy) and OUT/last.pt; "
                       "`emoreel export` turns a checkpoint into the ONNX model analyze uses. Needs emoreel[train] "
                       "(PyTorch; the CPU build is enough).")  # fmt: skip
    t.add_argument("--data", required=True,
                   help="fer2013.csv, a folder/zip with <split>/<class>/ images, or a face pack (.npz from --pack)")
    t.add_argument("--pack", metavar="NPZ", help="only write the train and val splits of --data to this compact "
                   "face pack (uint8, compressed, at --size) and exit: what a GPU machine needs, without the image files")
    t.add_argument("--size", type=int, default=None, metavar="PX",
                   help="input size of the network: faces PX x PX (default 48, FER2013's; a face pack's own size; with "
                   "--resume the checkpoint's). Face crops are resized to PX; a photo set is packed at PX straight from "
                   "its photos; packs of another size are refused. --init works from a model of any size")
    t.add_argument("--add-data", action="append", default=[], metavar="PACK",
                   help="also train on the train split of this face pack (repeatable), e.g. a photo set packed with "
                   "--pack: its faces cropped the way analyze crops them")
    t.add_argument("--small-copies", type=int, default=1, metavar="N",
                   help="with --pack of a photo set: N small, degraded copies of each training face (faces of 40-64 "
                   "px as in a crowd shot, aligned to --size; default 1)")
    t.add_argument("--out", default="runs/train", help="checkpoint folder")
    t.add_argument("--train-split", default="train", help="split of --data to train on (default train)")
    t.add_argument("--val-split", default="val", help="split of --data that picks best.pt (default val: FER2013 PublicTest)")
    t.add_argument("--epochs", type=int, help="total epochs (default 60, or the checkpoint's with --resume)")
    t.add_argument("--batch-size", type=int, default=None,
                   help="faces per training step (default 128; with --resume the checkpoint's unless given; with "
                   "--images the schedule stays the same when a GPU machine uses larger batches)")
    t.add_argument("--lr", type=float, default=0.05, help="peak learning rate (default 0.05)")
    t.add_argument("--arch", choices=("emonet", "vgg"), default=None,
                   help="emonet (default): residual CNN, 1.2 M parameters (the shipped model); vgg: VGG trunk + global "
                   "average pool, 4.7 M parameters at widths 64,128,256,512 (the published 72-73%% FER2013 recipe); "
                   "with --resume: the checkpoint's")
    t.add_argument("--widths", default=None, help="channels per stage (default 32,64,128,256 for emonet, "
                   "64,128,256,512 for vgg)")
    t.add_argument("--crop", type=int, default=0, metavar="PX",
                   help="train on random PX x PX crops of the --size faces (40 of 48 in the VGG recipe); the model card "
                   "then crops the centre at run time, or ten crops with test-time augmentation (0 = whole face)")
    t.add_argument("--images", type=int, default=0, metavar="N",
                   help="schedule length in training images seen (overrides --epochs): the learning-rate schedule "
                   "then holds across machines with different batch sizes")
    t.add_argument("--compact", action="store_true",
                   help="store checkpoints with float16 weights and optimizer state (half the size: fit for git)")
    t.add_argument("--seed", type=int, default=0, help="random seed: same seed, data and flags, same run (default 0)")
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all)")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    t.add_argument("--standardize", action="store_true",
                   help="normalise each face's brightness and contrast (as the runtime then will; recorded in the card)")
    t.add_argument("--degrade", type=float, default=0.0, metavar="P",
                   help="probability of each real-video degradation per training face: low resolution, blur, low light, "
                   "contrast loss, noise, JPEG (emoreel.model.degrade; 0 = off)")
    t.add_argument("--yaw", type=float, default=0.0, metavar="DEG",
                   help="simulate heads turned up to DEG degrees (horizontal squeeze and perspective; 0 = off)")
    t.add_argument("--mixup", type=float, default=0.0, metavar="A", help="mixup with Beta(A, A) weights (0 = off)")
    t.add_argument("--class-weight-power", type=float, default=0.3, metavar="K",
                   help="loss weight of a class ~ (1/frequency)^K: 0 = unweighted, 1 = fully balanced")
    t.add_argument("--warmup", type=float, default=2.0, metavar="EPOCHS",
                   help="linear learning-rate warm-up, in epochs")
    t.add_argument("--distill", metavar="TEACHER", default="",
                   help="also learn an exported model's answers (ONNX with its card, or a shipped model's name): each "
                   "clean training face's probabilities averaged over all of the teacher's --distill-views")
    t.add_argument("--distill-views", choices=("mirror", "jitter"), default="jitter", help="the teacher's test-time views (default jitter)")
    t.add_argument("--distill-weight", type=float, default=0.5, metavar="W",
                   help="share of the distillation loss; the rest is cross-entropy with the labels (default 0.5)")
    t.add_argument("--distill-temp", type=float, default=2.0, metavar="T", help="distillation temperature (default 2)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--init", metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (same --arch and --widths, any --size) with a fresh "
                   "schedule; an exported float EmoNet .onnx works too (its BatchNorm rebuilt from training statistics)")
    t.add_argument("--export", metavar="ONNX", help="after training, export best.pt here with its card (val metrics included)")
    t.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import replace

    from ..errors import InputError
    from ..model.datasets import load_dataset
    from ..model.photoset import PhotoSet
    from ..model.training.checkpoints import checkpoint_config, checkpoint_epochs
    from ..model.training.config import TrainConfig, command_line
    from ..model.training.loop import train

    epochs = args.epochs
    saved = checkpoint_config(args.out) if args.resume else None
    size = args.size
    if saved:  # resuming: the network is the checkpoint's unless given
        args.arch = args.arch or saved.get("arch", "emonet")
        args.widths = args.widths or ",".join(str(w) for w in saved["widths"])
        args.batch_size = args.batch_size or int(saved.get("batch_size", 128))
        was = int(saved.get("size", 48))
        if size not in (None, was):
            raise InputError(f"{args.out} holds a run at {was} px: --resume keeps its size (leave out --size {size})")
        size = was
    if size is not None and not 16 <= size <= 512:
        raise InputError(f"--size must be 16 to 512 px (got {size})")
    args.arch = args.arch or "emonet"
    args.batch_size = args.batch_size or 128
    if epochs is None:
        epochs = checkpoint_epochs(args.out) if args.resume else None
    cfg = TrainConfig(
        epochs=epochs or TrainConfig.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
        widths=tuple(int(w) for w in (args.widths or ("64,128,256,512" if args.arch == "vgg" else "32,64,128,256")).split(",")),
        standardize=args.standardize, arch=args.arch, crop=args.crop, images=args.images, compact=args.compact,
        degrade_p=args.degrade, yaw_deg=args.yaw, mixup=args.mixup, class_weight_power=args.class_weight_power,
        warmup_epochs=args.warmup, distill=args.distill, distill_views=args.distill_views,
        distill_weight=args.distill_weight, distill_temp=args.distill_temp,
    )
    if args.pack and PhotoSet.is_photo_set(args.data):  # whole photos: through analyze's photo path
        if args.add_data:
            raise InputError("--pack of a photo set packs that set alone; give --add-data when training")
        return _pack_photos(args, size)
    for p in [args.data, *args.add_data]:  # whole photos of people: never as crops, never across their person split
        if PhotoSet.is_photo_set(p):
            raise InputError(f"{p} is a photo set with people (labels.csv): pack its faces first, split by people: "
                             f"emoreel train --data {p} --pack FACES.npz, then --add-data FACES.npz")  # fmt: skip
    tr = load_dataset(args.data, args.train_split, size or 48)
    va = load_dataset(args.data, args.val_split, size or 48)
    size = size or tr.images.shape[1]  # a face pack keeps the size it was packed at
    _same_size(args.data, "--data", [tr, va], size, bool(saved))
    if args.add_data:
        from ..model.datasets import concat

        extra = [load_dataset(p, "train", size) for p in args.add_data]
        for p, d in zip(args.add_data, extra):
            _same_size(p, "--add-data", [d], size, bool(saved))
        tr = concat([tr, *extra])
    if args.crop and not 0 < args.crop < size:
        raise InputError(f"--crop {args.crop} must be smaller than the {size}-px faces")
    cfg = replace(cfg, size=size)
    print(f"train: {tr.summary()}\nval: {va.summary()}" + (f"\nfaces at {size} px" if size != 48 else ""), file=sys.stderr)
    if args.pack:
        from ..model.datasets import save_pack

        out = save_pack(args.pack, {args.train_split: tr, args.val_split: va})
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
        return 0

    def on_epoch(e, total):
        print(
            f"epoch {e.epoch}/{total}  train loss {e.train_loss:.3f} acc {e.train_acc:.3f}  "
            f"val loss {e.val_loss:.3f} acc {e.val_acc:.4f}  lr {e.lr:.4f}  {e.seconds:.0f}s",
            file=sys.stderr, flush=True,
        )

    if cfg.distill:
        print(f"distillation: the teacher {cfg.distill} answers every training face first "
              f"({len(tr)} faces x its {cfg.distill_views} views; minutes on a CPU)", file=sys.stderr, flush=True)
    res = train(tr, va, args.out, cfg, resume=args.resume, device=args.device, command=command_line(), on_epoch=on_epoch,
                init=args.init)
    print(f"best val accuracy {res.best_val_acc:.4f} at epoch {res.best_epoch}: {res.checkpoint}")
    if args.export:
        from .export import export_and_evaluate

        print(export_and_evaluate(res.checkpoint, args.export, args.data, args.val_split))
    return 0


def _same_size(path, flag: str, sets, size: int, resumed: bool) -> None:
    """Refuse, in one line, faces (a face pack's) that are not ``size`` px: packs are never resized."""
    from ..errors import InputError

    for d in sets:
        if tuple(d.images.shape[1:]) != (size, size):
            h, w = d.images.shape[1:3]
            whose = "the resumed run's size" if resumed else "--size"
            other = "" if resumed else f", or train at --size {h}"
            raise InputError(f"{flag} {path} holds {h}x{w} faces, not {size}x{size} ({whose}): pack it again with "
                             f"--size {size}{other}")  # fmt: skip


def _pack_photos(args, size: int | None) -> int:
    from ..analysis.facepack import pack_photo_set
    from ..model.evaluate import load_model
    from .progress import Progress

    if args.small_copies < 0:
        from ..errors import InputError

        raise InputError("--small-copies must be 0 or more")
    model = load_model(None)
    print(f"packing {args.data}: each photo through analyze's photo path (detection, gate, alignment at "
          f"{size or model.spec.width} px), train with {args.small_copies} small copies per face, and dev",
          file=sys.stderr)  # fmt: skip
    bar = Progress()
    try:
        out = pack_photo_set(args.data, args.pack, model, small_copies=args.small_copies, seed=args.seed,
                             progress=bar, size=size)  # fmt: skip
    finally:
        bar.close()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
