"""The shipped emotion model at run time: preprocessing comes from its card, dim faces keep their emotion."""

from __future__ import annotations

import cv2
import numpy as np

import emoreel
from emoreel.media.sample import astronaut
from emoreel.model.emotion import EmotionModel


def test_a_smile_in_the_dark_is_still_a_smile(tmp_path):
    """The smiling astronaut, then the same photo darker and flatter (a dim room, an audience):
    every copy is found, kept and read as happy, with about the same confidence."""
    img = astronaut().astype(np.float32)
    for k, (gain, offset) in enumerate([(1, 0), (0.35, 5), (0.2, 5), (0.12, 3)]):
        cv2.imwrite(str(tmp_path / f"img{k}.png"), np.clip(img * gain + offset, 0, 255).astype(np.uint8))
    obs = list(emoreel.analyze(tmp_path))
    assert [o.frame for o in obs if o.accepted] == [0, 1, 2, 3]
    assert [o.emotion for o in obs] == ["happy"] * 4
    happy = [o.probs[3] for o in obs]
    assert min(happy) > 0.6 and max(happy) - min(happy) < 0.15, happy


def test_shipped_card_normalises_each_face():
    spec = EmotionModel().spec
    assert spec.standardize is not None and (spec.width, spec.height, spec.colour) == (48, 48, "grey")


def _mouth_covered(img):
    """The photo with a grey bar over the face's mouth: a face the model is unsure of."""
    from emoreel.faces.detect import create_detector

    img = img.copy()
    lm = create_detector("centerface").detect(img).landmarks[0]
    y = int(lm[3, 1]) - 5
    cv2.rectangle(img, (int(lm[3, 0]) - 40, y - 20), (int(lm[4, 0]) + 40, y + 25), (120, 120, 120), -1)
    return img


def _faces(n=12, seed=0):
    """Aligned 48 px faces: the astronaut's, half of them with the mouth covered, turned, shifted, zoomed
    and dimmed a little (real pixels, sure and unsure answers)."""
    from emoreel.faces.align import align_faces
    from emoreel.faces.detect import create_detector

    spec, det = EmotionModel().spec, create_detector("centerface")
    base = [align_faces(img, det.detect(img), spec)[0][0] for img in (astronaut(), _mouth_covered(astronaut()))]
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = cv2.getRotationMatrix2D((24, 24), rng.uniform(-10, 10), rng.uniform(0.9, 1.1))
        m[:, 2] += rng.uniform(-3, 3, 2)
        face = cv2.warpAffine(base[k % 2], m, (48, 48), borderMode=cv2.BORDER_REPLICATE)
        out.append(np.clip(face * rng.uniform(0.5, 1.1), 0, 255).astype(np.uint8))
    return out


def test_view_sets_average_their_views():
    """'mirror' is the old tta=True; a view set is the mean of its views, each a real change of the face;
    'jitter' adds its zoomed views exactly where the mirror's top-2 margin is under JITTER_MARGIN."""
    from emoreel.model.emotion import JITTER_MARGIN, VIEWS, View

    m, crops = EmotionModel(), _faces()
    np.testing.assert_allclose(m.predict(crops, "mirror"), m.predict(crops, tta=True), atol=1e-6)
    np.testing.assert_allclose(m.predict(crops, "single"), m.predict(crops), atol=1e-6)
    each = {v: m.predict(crops, [v]) for v in VIEWS["jitter"]}
    assert min(np.abs(p - each[View()]).max() for v, p in each.items() if v != View()) > 1e-3
    np.testing.assert_allclose(m.predict(crops, VIEWS["jitter"]), np.mean(list(each.values()), 0), atol=1e-5)
    mirror = m.predict(crops, "mirror")
    top2 = np.sort(mirror, 1)[:, -2:]
    unsure = top2[:, 1] - top2[:, 0] < JITTER_MARGIN
    assert 0 < unsure.sum() < len(crops), "the test faces should include sure and unsure ones"
    got = m.predict(crops, "jitter")
    np.testing.assert_allclose(got[~unsure], mirror[~unsure], atol=1e-6)
    np.testing.assert_allclose(got[unsure], m.predict([c for c, u in zip(crops, unsure) if u], VIEWS["jitter"]), atol=1e-5)
    # a face's answer never depends on the batch it came in
    np.testing.assert_allclose(np.concatenate([m.predict(crops[:5], "jitter"), m.predict(crops[5:], "jitter")]), got, atol=1e-6)


def test_large_batches_are_run_in_bounded_pieces():
    m, crops = EmotionModel(), _faces(7)
    whole = m.predict(crops, "jitter")
    m.max_batch = 3
    np.testing.assert_allclose(m.predict(crops, "jitter"), whole, atol=1e-6)


def test_analyze_uses_the_chosen_views(tmp_path, monkeypatch):
    """analyze's probabilities are the model's over the chosen views (jitter by default) and run.json
    records them; the face is made unsure (its mouth covered) and every face counted unsure, so the two view
    sets give different answers."""
    import json

    from emoreel.faces.align import align_faces
    from emoreel.config import AnalyzeOptions
    from emoreel.analysis.analyzer import Analyzer
    from emoreel.types import Frame
    from emoreel.media.video import open_source

    monkeypatch.setattr("emoreel.model.emotion.JITTER_MARGIN", 1.01)
    img = _mouth_covered(astronaut())
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), img)
    assert AnalyzeOptions().views == "jitter"
    got = {}
    for views in ("mirror", "jitter"):
        out = tmp_path / views
        emoreel.analyze_to_dir(photos, out, AnalyzeOptions(views=views))
        assert json.loads((out / "run.json").read_text())["params"]["views"] == views
        got[views] = emoreel.load_results(out).probs[0]
        an = Analyzer(AnalyzeOptions(views=views))
        with open_source(str(photos)) as src:
            an.use_source(src)  # photos are detected at their own size
        faces = an.detect(Frame(index=0, time_s=0.0, image=img))
        crops, _ = align_faces(img, faces, an.model.spec)
        np.testing.assert_allclose(got[views], an.model.predict(crops, views)[0], atol=2e-4)  # CSV: 4 decimals
        an.close()
    assert np.abs(got["mirror"] - got["jitter"]).max() > 0.005
    one = Analyzer(AnalyzeOptions(tta=False))
    assert one.views == "single"
    one.close()


def test_an_unknown_view_set_is_refused_before_any_work():
    import pytest

    from emoreel.config import AnalyzeOptions
    from emoreel.errors import InputError

    with pytest.raises(InputError, match="--views must be one of mirror, jitter"):
        AnalyzeOptions(views="auto").validate()
    with pytest.raises(ValueError, match="unknown view set"):
        EmotionModel().predict(_faces(2), "zoom")
