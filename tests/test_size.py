"""A model at a higher input resolution (issue 27 item 4, `emoreel train --size 64`): trained from a 48-px
model's weights, exported with a 64-px card, run on 64-px crops aligned straight from the frame; photo sets
packed at 64 from the photos; packs of another size and size changes on resume refused in one line."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emoreel.cli import main  # noqa: E402
from emoreel.model.datasets import LabelledFaces, load_pack  # noqa: E402
from emoreel.model.emotion import EmotionModel, read_card  # noqa: E402
from emoreel.model.training.architectures import build_model, normalise  # noqa: E402
from emoreel.model.training.checkpoints import init_from_onnx, load_checkpoint  # noqa: E402
from emoreel.model.training.config import FER_LANDMARKS, TrainConfig  # noqa: E402
from emoreel.model.training.export import export_onnx  # noqa: E402
from emoreel.model.training.loop import train  # noqa: E402
from emoreel.media.sample import astronaut  # noqa: E402
from helpers import cli_err, one_line  # noqa: E402
from test_photoset import photo_set  # noqa: E402,F401  (the module's photo-set fixture)
from test_train import CFG, synthetic, write_folder  # noqa: E402


def resized(d: LabelledFaces, size: int) -> LabelledFaces:
    return replace(d, images=np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in d.images]))


@pytest.fixture(scope="module")
def run48(tmp_path_factory):
    """A 48-px checkpoint (the tiny network of test_train) to start 64-px runs from."""
    out = tmp_path_factory.mktemp("run48")
    train(synthetic(), synthetic(10, seed=1), out, TrainConfig(epochs=4, **CFG), command="run48")
    return out / "best.pt"


@pytest.fixture
def folder(tmp_path):
    """FER2013's layout at 48 px: a few dozen faces in train/ and val/."""
    root = write_folder(tmp_path / "ds", synthetic(6), "train")
    return write_folder(root, synthetic(3, seed=1), "val")


def test_a_64px_run_from_a_48px_checkpoint_exports_a_64px_model_that_analyze_runs(run48, folder, tmp_path, capsys,
                                                                                  monkeypatch):  # fmt: skip
    """The user's path: `train --size 64 --init 48px.pt --export`; the card says 64, and analyze aligns each face
    of a real photo straight to a 64-px crop with the same template and classifies it."""
    onnx = tmp_path / "m64.onnx"
    args = ["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--size", "64", "--init", str(run48),
            "--widths", "8,16", "--batch-size", "16", "--threads", "1", "--epochs", "1", "--degrade", "0.3",
            "--yaw", "30", "--standardize", "--export", str(onnx)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["emoreel", *args])
    assert main(args) == 0
    assert "epoch 1/1" in capsys.readouterr().err
    card = read_card(onnx)
    assert card["input"]["size"] == [64, 64] and card["training"]["config"]["size"] == 64
    assert card["training"]["data"]["init"]["size"] == 48
    assert card["evaluation"]["n"] == 21  # the 48-px val faces, resized by the model's preprocessing
    assert card["face"]["landmarks"] == [list(p) for p in FER_LANDMARKS]  # the same template, at 64 px
    # same weights as the 48-px start, before training: the 64-px network started from them
    start, _, _ = load_checkpoint(run48)
    model, cfg, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    assert cfg.size == 64 and set(start.state_dict()) == set(model.state_dict())

    seen = []
    predict = EmotionModel.predict

    def spy(self, crops, tta=False):
        seen.extend(c.shape for c in crops)
        return predict(self, crops, tta)

    monkeypatch.setattr(EmotionModel, "predict", spy)
    import emoreel

    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[100:612, 400:912] = astronaut()  # a face of about 90 px in a 720p frame
    obs = list(emoreel.analyze(frame, model=str(onnx)))
    assert len(obs) == 1 and obs[0].emotion and seen and all(s[:2] == (64, 64) for s in seen)
    m = EmotionModel(onnx)
    assert (m.spec.width, m.spec.height) == (64, 64) and m.spec.landmarks == EmotionModel().spec.landmarks

    assert main(["evaluate", "--data", str(folder), "--model", str(onnx), "--no-tta", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == card["evaluation"]["val_accuracy"]


def test_init_of_a_64px_network_from_a_48px_model_keeps_its_function(run48, tmp_path):
    """EmoNet is fully convolutional: a 48-px checkpoint or exported ONNX initialises a 64-px run with the same
    weights (on 64-px faces it computes what the 48-px network computes on them); other widths are refused."""
    data64 = resized(synthetic(20, seed=3), 64)
    start, _, _ = load_checkpoint(run48)
    onnx48 = export_onnx(run48, tmp_path / "m48.onnx")
    cfg64 = TrainConfig(**{**CFG, "size": 64})
    net = build_model(cfg64)
    info = init_from_onnx(net, onnx48, data64.images, cfg64)
    assert info["size"] == 48
    x = normalise(torch.from_numpy(data64.images))
    with torch.no_grad():
        net.eval()
        assert np.abs(net(x).numpy() - start(x).numpy()).max() < 1e-3
    warm = train(data64, resized(synthetic(10, seed=1), 64), tmp_path / "warm", replace(cfg64, epochs=1), init=run48)
    cold = train(data64, resized(synthetic(10, seed=1), 64), tmp_path / "cold", replace(cfg64, epochs=1))
    assert warm.history[0].train_loss < cold.history[0].train_loss
    wide = TrainConfig(**{**CFG, "size": 64, "widths": (16, 32)})
    with pytest.raises(Exception, match=r"widths \(8, 16\), not emonet with widths \(16, 32\)"):
        train(data64, data64, tmp_path / "bad", wide, init=run48)
    with pytest.raises(Exception, match=r"is emonet with widths \(8, 16\), not an EmoNet with widths \(16, 32\)"):
        init_from_onnx(build_model(wide), onnx48, data64.images, wide)
    with pytest.raises(Exception, match="64x64"):  # faces of the wrong size never train silently
        train(synthetic(), synthetic(), tmp_path / "size", cfg64)


def test_packs_of_another_size_are_refused_and_resume_keeps_the_size(folder, tmp_path, capsys, monkeypatch):
    pack48, pack64 = tmp_path / "f48.npz", tmp_path / "f64.npz"
    assert main(["train", "--data", str(folder), "--pack", str(pack48)]) == 0
    assert main(["train", "--data", str(folder), "--pack", str(pack64), "--size", "64"]) == 0
    assert load_pack(pack48).images.shape[1:] == (48, 48) and load_pack(pack64).images.shape[1:] == (64, 64)
    common = ["train", "--out", str(tmp_path / "run"), "--widths", "8,16", "--batch-size", "16", "--threads", "1"]
    code, err = cli_err(capsys, *common, "--data", folder, "--add-data", pack48, "--size", 64)
    assert code == 2 and "--add-data" in one_line(err) and "48x48 faces, not 64x64" in err and "--size 64" in err
    code, err = cli_err(capsys, *common, "--data", folder, "--add-data", pack64)  # default 48 px
    assert code == 2 and "64x64 faces, not 48x48" in one_line(err)
    code, err = cli_err(capsys, *common, "--data", pack48, "--size", 64)
    assert code == 2 and "--data" in one_line(err) and "48x48" in err
    assert not (tmp_path / "run").exists()

    first = [*common, "--data", str(pack64), "--add-data", str(pack64), "--epochs", "1"]  # the pack's own size
    monkeypatch.setattr(sys, "argv", ["emoreel", *first])
    assert main(first) == 0
    capsys.readouterr()
    code, err = cli_err(capsys, *common, "--data", folder, "--resume", "--size", 48, "--epochs", 2)
    assert code == 2 and "64 px" in one_line(err) and "--resume keeps its size" in err
    again = [*common, "--data", str(folder), "--resume", "--epochs", "2"]  # crops resized to the run's 64 px
    monkeypatch.setattr(sys, "argv", ["emoreel", *again])
    assert main(again) == 0
    assert "epoch 2/2" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "history.json").read_text())["config"]["size"] == 64
    code, err = cli_err(capsys, *common, "--data", pack48, "--resume", "--epochs", 3)
    assert code == 2 and "the resumed run's size" in one_line(err)


def test_a_photo_set_packed_at_64_is_cropped_at_64_from_the_photos(photo_set, tmp_path):  # noqa: F811
    """Each face aligned at 64 px from the photo with the 48-px pack's template: the same face with more detail
    than the 48-px crop enlarged; small copies are still small faces (less detail than their face)."""
    p48, p64 = tmp_path / "p48.npz", tmp_path / "p64.npz"
    assert main(["train", "--data", str(photo_set), "--pack", str(p48), "--small-copies", "1"]) == 0
    assert main(["train", "--data", str(photo_set), "--pack", str(p64), "--small-copies", "1", "--size", "64"]) == 0
    a, b = load_pack(p48, "train"), load_pack(p64, "train")
    assert b.images.shape[1:] == (64, 64) and len(a) == len(b) and np.array_equal(a.labels, b.labels)
    assert load_pack(p64, "dev").images.shape[1:] == (64, 64) and "at 64 px" in b.source
    face48, face64, small64 = a.images[0].astype(np.float32), b.images[0].astype(np.float32), b.images[1].astype(np.float32)
    down = cv2.resize(face64, (48, 48), interpolation=cv2.INTER_AREA)
    assert np.corrcoef(down.ravel(), face48.ravel())[0, 1] > 0.97  # the same template
    up = cv2.resize(face48, (64, 64), interpolation=cv2.INTER_LINEAR)
    lap = lambda x: cv2.Laplacian(x, cv2.CV_32F).var()  # noqa: E731
    assert lap(face64) > 1.2 * lap(up)  # cropped from the photo, not enlarged from 48
    assert lap(small64) < lap(face64)


def test_degradations_take_the_same_share_of_a_larger_face():
    """Blur widens with the crop, so a blurred 64-px face shrunk to 48 looks like the 48-px face blurred (closer
    than with the 48-px widths on the 64-px face)."""
    from emoreel.model.degrade import degrade_one

    grey = cv2.cvtColor(astronaut()[40:220, 140:320], cv2.COLOR_BGR2GRAY)
    x48, x64 = (cv2.resize(grey, (s, s), interpolation=cv2.INTER_AREA) for s in (48, 64))
    blur = [False, True, False, False, False, False]
    scaled, naive = [], []
    for seed in range(6):
        d48 = degrade_one(x48, blur, np.random.default_rng(seed)).astype(np.float32)
        d64 = degrade_one(x64, blur, np.random.default_rng(seed)).astype(np.float32)
        sigma = float(np.random.default_rng(seed).uniform(0.5, 1.6))  # the width degrade_one drew
        same = np.clip(np.rint(cv2.GaussianBlur(x64.astype(np.float32), (0, 0), sigma)), 0, 255)
        scaled.append(np.abs(cv2.resize(d64, (48, 48), interpolation=cv2.INTER_AREA) - d48).mean())
        naive.append(np.abs(cv2.resize(same, (48, 48), interpolation=cv2.INTER_AREA) - d48).mean())
    assert np.mean(scaled) < 0.6 * np.mean(naive)


def test_the_blur_gate_sees_the_same_face_whatever_the_models_size():
    from emoreel.faces.align import SHARPNESS_SIDE, align_face, gate_sharpness
    from emoreel.types import Faces

    spec48 = EmotionModel().spec
    spec64 = replace(spec48, width=64, height=64)
    img = cv2.resize(astronaut(), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # a face of about 45 px
    lm = np.array([[[102.1, 51.2], [124.1, 53.0], [112.7, 63.4], [102.2, 72.6], [120.6, 74.1]]], np.float32)  # CenterFace's
    faces = Faces(np.array([[89.9, 27.9, 136.2, 89.0]], np.float32), np.array([0.9]), lm)
    c48 = [align_face(img, lm[0, 0], lm[0, 1], spec48, 0.0, lm[0])]
    c64 = [align_face(img, lm[0, 0], lm[0, 1], spec64, 0.0, lm[0])]
    assert SHARPNESS_SIDE == 48
    g48 = gate_sharpness(img, faces, np.array([0]), spec48, c48)
    assert g48[0] == pytest.approx(gate_sharpness(img, faces, np.array([0]), spec64, c64)[0])
    assert cv2.Laplacian(cv2.cvtColor(c64[0], cv2.COLOR_BGR2GRAY), cv2.CV_32F).var() < 0.8 * g48[0]
