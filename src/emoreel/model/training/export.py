"""From checkpoints to a shipped model: ONNX export (one checkpoint or an ensemble) with its
model card (:func:`export_onnx`), re-export of an exported model (:func:`reexport_onnx`), and
int8 quantisation calibrated on training faces (:func:`quantize_int8`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

from ...errors import EmoreelError, ModelError
from ...types import EMOTIONS
from ..emotion import Standardize
from .architectures import Ensemble
from .checkpoints import load_checkpoint
from .config import FER_EYES, FER_LANDMARKS, MEAN, STD, TrainConfig, command_line, data_from_command, torch

log = logging.getLogger(__name__)


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
