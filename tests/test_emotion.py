"""The shipped emotion model at run time: preprocessing comes from its card, dim faces keep their emotion."""

from __future__ import annotations

import cv2
import numpy as np

import emoreel
from emoreel.emotion import EmotionModel
from emoreel.sample import astronaut


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
