"""Training on synthetic data lowers the loss, checkpoints resume, and ONNX export matches PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emoreel.cli import main  # noqa: E402
from emoreel.datasets import LabelledFaces  # noqa: E402
from emoreel.emotion import EmotionModel, read_card, sha256_file  # noqa: E402
from emoreel.evaluate import evaluate  # noqa: E402
from emoreel.train import TrainConfig, export_onnx, load_checkpoint, normalise, train  # noqa: E402


def synthetic(n_per=40, seed=0) -> LabelledFaces:
    """Each class is a stripe pattern of its own period (flip-invariant, local): learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    rows = np.arange(48)[:, None]
    for c in range(7):
        for _ in range(n_per):
            stripes = (np.sin(2 * np.pi * (rows + rng.uniform(0, 10)) / (2 + c)) > 0) * 150
            img = (rng.integers(0, 60, (48, 48)) + stripes).astype(np.uint8)
            imgs.append(img)
            labels.append(c)
    return LabelledFaces(np.stack(imgs), np.array(labels), source="synthetic")


CFG = dict(widths=(8, 16), batch_size=32, lr=0.05, warmup_epochs=0.5, rotate_deg=3, scale=0.03, shift=0.02, erase_p=0, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = train(synthetic(), synthetic(10, seed=1), out, TrainConfig(epochs=6, **CFG), command="test")
    return out, res


def test_training_lowers_loss_and_checkpoints(trained):
    out, res = trained
    losses = [h.train_loss for h in res.history]
    assert losses[-1] < losses[0] * 0.8
    assert res.best_val_acc > 0.5  # chance is 1/7
    assert (out / "last.pt").exists() and (out / "best.pt").exists()
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["history"]) == 6


def test_resume_continues_from_checkpoint(trained, tmp_path):
    out, res = trained
    import shutil

    shutil.copytree(out, tmp_path / "r", dirs_exist_ok=True)
    more = train(synthetic(), synthetic(10, seed=1), tmp_path / "r", TrainConfig(epochs=8, **CFG), resume=True)
    assert [h.epoch for h in more.history] == list(range(1, 9))  # 6 from the checkpoint, 2 more
    assert [h.train_loss for h in more.history[:6]] == [h.train_loss for h in res.history]


def test_onnx_export_matches_pytorch_and_card(trained, tmp_path):
    out, _ = trained
    onnx_path = export_onnx(out / "best.pt", tmp_path / "m.onnx")
    card = read_card(onnx_path)
    assert card["sha256"] == sha256_file(onnx_path)
    assert card["classes"][3] == "happy" and card["input"]["size"] == [48, 48]
    model, _, _ = load_checkpoint(out / "best.pt")
    x = synthetic(3, seed=2).images
    with torch.no_grad():
        ref = torch.softmax(model(normalise(torch.from_numpy(x))), 1).numpy()
    got = EmotionModel(onnx_path).predict(list(x))
    assert np.abs(ref - got).max() < 1e-4


def test_cli_export_then_evaluate_reproduces_card(trained, tmp_path, capsys, monkeypatch):
    out, _ = trained
    # a tiny image-folder dataset for the CLI
    import cv2

    data = synthetic(5, seed=3)
    from emoreel.types import EMOTIONS

    for i, (img, lab) in enumerate(zip(data.images, data.labels)):
        d = tmp_path / "ds" / "val" / EMOTIONS[lab]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i}.png"), img)
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(out / "best.pt"), "-o", str(onnx_path), "--data", str(tmp_path / "ds")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--data", str(tmp_path / "ds"), "--model", str(onnx_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"accuracy", "n", "classes", "per_class", "confusion"} <= set(result)
    assert result["accuracy"] == read_card(onnx_path)["evaluation"]["val_accuracy"]
    conf = np.array(result["confusion"])
    assert conf.sum() == result["n"] == 35
    assert np.trace(conf) / conf.sum() == pytest.approx(result["accuracy"], abs=1e-4)
    direct = evaluate(onnx_path, data)
    assert direct.accuracy == pytest.approx(result["accuracy"], abs=1e-4)
