"""Where a network's weights come from and go during training: checkpoints written atomically
after every epoch (float16 when ``compact``), read back to resume or export, and
:func:`init_from_onnx`, which starts a run from an exported model's weights.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np

from ...errors import EmoreelError, ModelError
from ..emotion import Standardize
from .architectures import build_model, normalise
from .config import TrainConfig, nn, require_torch, torch

log = logging.getLogger(__name__)


def atomic_torch_save(obj, path: Path) -> None:
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


def half_state(state):
    """float32 tensors of a (nested) state stored as float16: compact checkpoints."""
    return _cast(state, torch.float32, torch.float16)


def float_state(state):
    """float16 tensors of a (nested) state back to float32."""
    return _cast(state, torch.float16, torch.float32)


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
    eval mode and nearly the same in training mode. The weights do not depend on the
    input size: a 48-px model starts a 64-px run. Returns the provenance entry.
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
    arch = card.get("architecture", {})
    what = f"{arch.get('arch', 'a model')} with widths {tuple(arch['widths'])}" if "widths" in arch else "another network"
    mismatch = f"{onnx_path} is {what}, not an EmoNet with widths {tuple(cfg.widths)} (give its --widths)"
    if len(convs) != len(pairs) or len(gemm) != 1:
        raise EmoreelError(mismatch)
    for node, (conv, bn) in zip(convs, pairs):
        w, b = inits[node.input[1]], inits[node.input[2]]
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise EmoreelError(mismatch)
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
    size = card["input"]["size"]
    return {"model": str(onnx_path), "sha256": sha256_file(onnx_path), "command": card.get("training", {}).get("command", ""),
            "val_acc": ev.get("val_accuracy"), "size": int(size if isinstance(size, int) else size[0])}


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
        model.load_state_dict(float_state(ck["model"]))
    except FileNotFoundError:
        raise ModelError(f"checkpoint {path} not found") from None
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, AttributeError, pickle.UnpicklingError) as e:
        raise ModelError(f"{path}: not a readable emoreel checkpoint ({type(e).__name__})") from None
    model.eval()
    return model, cfg, ck
