"""Face detectors on real faces: the shipped astronaut photo, the example video, and (when present) the shared clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emoreel.errors import InputError, ModelError
from emoreel.faces.detect import DETECTORS, FaceDetector, centerface_model_path, create_detector, nms
from emoreel.media.sample import astronaut, make_example_video
from emoreel.types import Faces

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = SHARED / "video" / "short_hamilton_clip.mp4"

# The astronaut's face in the 512x512 photo (measured once by eye and by all three backends):
# centre about (225, 118), about 90 px wide; eyes near (203, 102) and (247, 104).
FACE_CENTRE = np.array([225.0, 118.0])
EYE_L, EYE_R = np.array([203.0, 102.0]), np.array([247.0, 104.0])


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def detector(request):
    try:
        det = create_detector(request.param)
    except ModelError as exc:
        if request.param == "hog":  # optional backend (dlib comes with the 'people' extra)
            pytest.skip(str(exc))
        raise
    yield det
    det.close()


def centre(box):
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def check_valid(faces: Faces, shape) -> None:
    h, w = shape[:2]
    assert faces.boxes.dtype == np.float32 and faces.landmarks.shape == (len(faces), 5, 2)
    assert ((faces.scores >= 0) & (faces.scores <= 1)).all()
    assert (faces.boxes[:, 0] >= 0).all() and (faces.boxes[:, 2] <= w).all()
    assert (faces.boxes[:, 1] >= 0).all() and (faces.boxes[:, 3] <= h).all()
    assert (faces.boxes[:, 2] > faces.boxes[:, 0]).all() and (faces.boxes[:, 3] > faces.boxes[:, 1]).all()


def example_frames(tmp_path, indices):
    path = make_example_video(tmp_path / "example.mp4", frames=60)
    cap = cv2.VideoCapture(str(path))
    frames = {}
    for i in range(max(indices) + 1):
        ok, img = cap.read()
        assert ok
        if i in indices:
            frames[i] = img
    cap.release()
    return frames


def test_finds_the_astronaut_with_eyes(detector):
    img = astronaut()
    faces = detector.detect(img)
    check_valid(faces, img.shape)
    best = int(np.argmax(faces.scores))
    box = faces.boxes[best]
    assert np.linalg.norm(centre(box) - FACE_CENTRE) < 20, box
    assert 65 < box[2] - box[0] < 125, box
    # any other box (dlib HOG scores the round mission patch just above its boundary) is not on the face
    for other in np.delete(faces.boxes, best, 0):
        assert np.linalg.norm(centre(other) - FACE_CENTRE) > 60
    left, right = faces.landmarks[best, 0], faces.landmarks[best, 1]
    for eye, expected in ((left, EYE_L), (right, EYE_R)):
        assert box[0] <= eye[0] <= box[2] and box[1] <= eye[1] <= box[3]
        assert np.linalg.norm(eye - expected) < 8, (eye, expected)
    assert left[0] < right[0]


def test_two_faces_in_the_example_video(detector, tmp_path):
    for i, img in example_frames(tmp_path, {0, 30, 59}).items():
        faces = detector.detect(img)
        check_valid(faces, img.shape)
        assert len(faces) == 2, (i, faces.boxes, faces.scores)
        # one face in each half of the frame, each with both eyes
        xs = sorted(centre(b)[0] for b in faces.boxes)
        assert xs[0] < 320 < xs[1] or i == 59  # the copies drift towards each other
        assert np.isfinite(faces.landmarks[:, :2]).all(), (i, faces.landmarks[:, :2])


def test_no_faces_in_blank_or_noise(detector):
    rng = np.random.default_rng(0)
    for img in (np.full((360, 640, 3), 128, np.uint8), rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)):
        faces = detector.detect(img)
        assert len(faces) == 0, faces.boxes
        assert faces.landmarks.shape == (0, 5, 2)


def test_downscaled_detection_maps_back(detector):
    """A 1280x720 frame detected at max_side 640 and 384 gives the full-size boxes (within a few %)."""
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    face = cv2.resize(astronaut(), (1024, 1024), interpolation=cv2.INTER_LINEAR)[:720, 100:900]  # 2x upscale
    canvas[:, 300:1100] = face
    offset = np.array([300 - 100, 0])
    full = type(detector)(max_side=0).detect(canvas)
    assert len(full) >= 1
    best = np.argmax(full.scores)
    ref, ref_lm = full.boxes[best], full.landmarks[best, :2]
    assert np.linalg.norm(centre(ref) - (FACE_CENTRE * 2 + offset)) < 40, ref
    width = ref[2] - ref[0]
    # dlib's HOG needs faces of 80 px: the 180 px face is 54 px at 384
    for side in (640, 384) if detector.name != "hog" else (640,):
        small = type(detector)(max_side=side).detect(canvas)
        assert len(small) >= 1, side
        best = np.argmax(small.scores)
        # dlib's HOG boxes come in steps of its 5/6 image pyramid
        tol = 0.2 if detector.name == "hog" else 0.12
        assert np.abs(small.boxes[best] - ref).max() < tol * width, (side, small.boxes[best], ref)
        assert np.abs(small.landmarks[best, :2] - ref_lm).max() < 0.12 * width, (side, small.landmarks[best, :2], ref_lm)


def test_min_face_limits_the_downscaling():
    """max_side sets the working size, but never shrinks a min_face face below what the backend finds."""
    det = create_detector("centerface", max_side=320, min_face=40)
    assert det.working_scale(640, 360) == 0.5  # 320 px wide: a 40 px face is 20 px
    assert det.working_scale(1920, 1080) == pytest.approx(16 / 40)  # not 1/6: that would make it 6.7 px
    assert det.working_scale(200, 100) == 1.0
    assert create_detector("centerface", max_side=320).working_scale(1920, 1080) == pytest.approx(1 / 6)
    with pytest.raises(InputError, match="min_face"):
        create_detector("centerface", min_face=-1)


def test_small_faces_in_a_1080p_frame_are_found():
    """Three 48-56 px faces in a 1080p frame: found with the analyze defaults (max_side 320, min_face 40),
    missed when the frame is simply scaled to 320 px (they would be 8-9 px)."""
    from emoreel.config import AnalyzeOptions

    o = AnalyzeOptions()
    canvas = np.full((1080, 1920, 3), 110, np.uint8)
    head = astronaut()[10:330, 60:380]
    centres = []
    for k, px in enumerate((170, 180, 200)):  # head crops; the face box is about 0.28 of the crop
        x, y = 300 + 600 * k, 400 + 100 * k
        canvas[y : y + px, x : x + px] = cv2.resize(head, (px, px), interpolation=cv2.INTER_AREA)
        centres.append((x + px * 0.5, y + px * 0.35))
    found = create_detector(o.detector, max_side=o.det_max_side, min_face=o.min_face).detect(canvas)
    assert len(found) == 3
    assert all(min(np.linalg.norm(centre(b) - c) for b in found.boxes) < 30 for c in centres)
    assert (found.widths >= 40).all() and (found.widths <= 70).all(), found.widths
    assert len(create_detector(o.detector, max_side=o.det_max_side).detect(canvas)) == 0


def test_centerface_landmarks_of_a_face_cut_by_the_edge():
    """Points stay on the eyes when the face is cut by the image's left edge (box clipped to 0)."""
    det = create_detector("centerface")
    img = astronaut()
    whole = det.detect(img)
    cut = det.detect(np.ascontiguousarray(img[:, 190:]))
    assert len(cut) == 1 and cut.boxes[0, 0] == 0
    shift = np.float32([190, 0])
    assert np.abs(cut.landmarks[0, :2] + shift - whole.landmarks[0, :2]).max() < 5


def test_centerface_threads_give_the_same_faces():
    img = astronaut()
    one = create_detector("centerface", threads=1).detect(img)
    two = create_detector("centerface", threads=2).detect(img)
    np.testing.assert_allclose(one.boxes, two.boxes, atol=0.05)
    np.testing.assert_allclose(one.landmarks, two.landmarks, atol=0.05)


def test_grey_and_bgra_inputs():
    det = create_detector("centerface")
    img = astronaut()
    assert len(det.detect(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))) == 1
    assert len(det.detect(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))) == 1
    with pytest.raises(InputError, match="uint8"):
        det.detect(img.astype(np.float32))


def test_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.6], np.float32)
    # box 1 (best) overlaps 0 and 3 with IoU 9/11; box 2 is elsewhere
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 0, 2]  # 0 and 3 are identical (IoU 1)
    assert nms(boxes[:0], scores[:0], 0.3).tolist() == []


def test_registry_and_errors():
    assert set(DETECTORS) >= {"centerface", "haar"}
    with pytest.raises(InputError) as err:
        create_detector("retinaface")
    assert "retinaface" in str(err.value) and "centerface" in str(err.value) and "haar" in str(err.value)
    with pytest.raises(InputError, match="bad option"):
        create_detector("haar", nonsense=1)
    with pytest.raises(InputError, match="threshold"):
        create_detector("haar", threshold=2)
    assert centerface_model_path().name == "centerface.onnx"


def test_any_detector_instance_is_accepted():
    class Fixed(FaceDetector):
        name = "fixed"

        def detect(self, image):
            return Faces(np.array([[1, 2, 3, 4]]), np.array([1.0]), np.full((1, 5, 2), np.nan))

    det = Fixed()
    assert create_detector(det) is det
    assert len(det.detect(astronaut())) == 1


@pytest.mark.skipif(not CLIP.exists(), reason="../shared/data/video/short_hamilton_clip.mp4 not present")
def test_centerface_on_the_shared_clip():
    """Known answers (docs/detectors.md): a face in every frame; the singer's face in shot F has both eyes."""
    det = create_detector("centerface", max_side=384)
    cap = cv2.VideoCapture(str(CLIP))
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if i % 10 == 0:
            faces = det.detect(img)
            assert len(faces) >= 1, i
            if 82 <= i <= 210:  # F: the singer facing the camera, about 80 px wide
                big = faces[faces.widths > 60]
                assert len(big) == 1 and np.isfinite(big.landmarks).all(), i
                (x1, y1, x2, y2), eyes = big.boxes[0], big.landmarks[0, :2]
                assert (x1 < eyes[:, 0]).all() and (eyes[:, 0] < x2).all() and eyes[0, 0] < eyes[1, 0], i
                assert (y1 < eyes[:, 1]).all() and (eyes[:, 1] < y1 + 0.6 * (y2 - y1)).all(), i  # eyes in the upper face
        i += 1
    cap.release()
    assert i == 275


def _windows_match_whole_frame(det, frames, max_share: float = 1.0) -> int:
    """Windows around the whole-frame faces find the same faces (box, eyes, score) wherever the windows cost
    at most ``max_share`` of the whole frame (as the fast default uses them); returns the frames checked."""
    from emoreel.faces.track import iou_matrix

    checked = found = total = extra = 0
    box_err, eye_err, score_err = [], [], []
    for img in frames:
        whole = det.detect(img)
        h, w = img.shape[:2]
        regions = det.regions(w, h, whole.boxes, max_share=max_share)
        if not len(whole) or regions is None:
            continue
        near = det.detect_regions(img, regions)
        checked += 1
        total += len(whole)
        iou = iou_matrix(whole.boxes, near.boxes) if len(near) else np.zeros((len(whole), 0))
        for i in range(len(whole)):
            if iou.shape[1] and iou[i].max() > 0.5:
                j, side = int(iou[i].argmax()), whole.widths[i]
                found += 1
                box_err.append(np.abs(whole.boxes[i] - near.boxes[j]).max() / side)
                eye_err.append(np.abs(whole.landmarks[i, :2] - near.landmarks[j, :2]).max() / side)
                score_err.append(abs(whole.scores[i] - near.scores[j]))
        extra += max(0, len(near) - len(whole))
    if total:
        assert found >= 0.95 * total and extra <= 0.05 * total, (found, extra, total)
        assert np.percentile(box_err, 95) < 0.1 and np.percentile(eye_err, 95) < 0.1, (box_err, eye_err)
        assert np.percentile(score_err, 95) < 0.05, score_err
    return checked


def test_windows_around_faces_find_what_the_whole_frame_finds(tmp_path):
    """The fast default detects between keyframes only around known faces: it must see them as a whole-frame run does."""
    from emoreel.media.video import open_source

    det = create_detector("centerface", max_side=320, min_face=40)
    with open_source(make_example_video(tmp_path / "example.mp4")) as src:
        frames = [f.image for f in src if f.index % 15 == 0]
    assert _windows_match_whole_frame(det, frames) == len(frames)
    img = frames[0]
    regions = det.regions(img.shape[1], img.shape[0], det.detect(img).boxes, max_share=1.0)
    assert len(regions) == 2 and all(r.zoom == 1.0 for r in regions)
    assert all(v % det.region_grid == 0 or v in (img.shape[1] // 2, img.shape[0] // 2) for r in regions for v in r[:4])
    cost = sum((r.x1 - r.x0) * (r.y1 - r.y0) for r in regions)
    assert cost < 320 * 180  # fewer pixels than the whole working frame
    assert det.regions(img.shape[1], img.shape[0], det.detect(img).boxes, max_share=0.1) is None  # too costly: whole
    assert len(det.detect_regions(img, [])) == 0


@pytest.mark.skipif(not CLIP.exists(), reason="../shared/data/video/short_hamilton_clip.mp4 not present")
def test_windows_match_the_whole_frame_on_real_footage():
    """Audience faces near the threshold, a pianist, a singer close-up (zoomed windows) at 720p."""
    det = create_detector("centerface", max_side=320, min_face=40)
    cap = cv2.VideoCapture(str(CLIP))
    frames, i = [], 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if i % 5 == 0:
            frames.append(cv2.resize(img, (1280, 720), interpolation=cv2.INTER_LINEAR))
        i += 1
    cap.release()
    assert _windows_match_whole_frame(det, frames, max_share=0.5) >= 25  # as the fast default uses them
