import json

import numpy as np
import pytest
from PIL import Image

from extractor.datasets.align import template_points
from extractor.datasets.decode import decode_image
from extractor.datasets.faces import (
    Detection,
    FaceDetector,
    FaceSpec,
    NoFaceError,
    face_region,
)
from extractor.datasets.transforms import (
    PreprocessSpec,
    crop_and_resize,
    normalize,
    to_pixels,
)
from tests.assets import EMOTION_TEACHER, LFW_IMAGES, requires_assets
from tests.images import paste_into_scene, textured_background

SCENE = (640, 480)
EMOTION = PreprocessSpec(size=48, channels="gray", mean=(127.5,), std=(127.5,))


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    """Twelve LFW photos, spread over the alphabet."""
    if not LFW_IMAGES.is_dir():
        pytest.skip("../shared/assets is not present")
    files = sorted(LFW_IMAGES.iterdir())[::500][:12]
    return [decode_image(path.read_bytes()) for path in files]


@pytest.fixture(scope="module")
def scenes(photos, detector):
    """Each photo pasted at a random position and scale into a 640x480 textured background.

    Returns (scenes, expected face boxes in scene pixels, face regions cut from the photos alone).
    """
    rng = np.random.default_rng(7)
    spec = FaceSpec(mode="detect")
    alone = detector.detect(photos)
    scenes, expected = [], []
    for photo, face in zip(photos, alone):
        scene, (x, y, side) = paste_into_scene(photo, rng, SCENE)
        scenes.append(scene)
        expected.append([x + face.box[0] * side, y + face.box[1] * side,
                         x + face.box[2] * side, y + face.box[3] * side])
    return scenes, expected, [face_region(p, f, spec) for p, f in zip(photos, alone)]


def iou(a, b) -> float:
    wide = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    high = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = wide * high
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def pixel_box(detection: Detection, size: tuple[int, int]) -> list[float]:
    width, height = size
    x0, y0, x1, y1 = detection.box
    return [x0 * width, y0 * height, x1 * width, y1 * height]


def emotion_labels(images: list[Image.Image]) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(EMOTION_TEACHER), providers=["CPUExecutionProvider"])
    batch = normalize(np.stack([to_pixels(crop_and_resize(img, EMOTION), EMOTION) for img in images]), EMOTION)
    return session.run(None, {session.get_inputs()[0].name: batch})[0].argmax(axis=1)


def detection(score: float = 0.99) -> Detection:
    return Detection(box=(0.25, 0.2, 0.75, 0.8), score=score,
                     landmarks=((0.4, 0.4), (0.6, 0.4), (0.5, 0.5), (0.42, 0.65), (0.58, 0.65)))


# --- the spec and the stored detection ---------------------------------------------------------

@pytest.mark.parametrize("kwargs,flag", [
    ({"mode": "crop"}, "--faces"), ({"mode": "detect", "margin": -0.1}, "--face-margin"),
    ({"mode": "detect", "min_score": 1.5}, "--face-min-score"), ({"align": True}, "--face-align"),
])
def test_invalid_specs_name_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        FaceSpec(**kwargs)


def test_spec_data_drops_defaults_and_carries_version_and_template():
    assert FaceSpec().as_data() == {"version": "1"}
    assert FaceSpec(mode="detect").as_data() == {"version": "1", "mode": "detect"}
    aligned = FaceSpec(mode="detect", align=True, margin=0.3).as_data()
    assert aligned["margin"] == 0.3 and aligned["align"] is True and len(aligned["template"]) == 5
    h1, h2, h3 = (json.dumps(FaceSpec(mode="detect", margin=m).as_data(), sort_keys=True) for m in (0.1, 0.3, 0.1))
    assert h1 == h3 != h2


def test_detector_data_changes_with_its_settings(detector):
    assert detector.as_data() == FaceDetector(batch_size=3, threads=2).as_data()  # neither changes a detection
    assert detector.as_data() != FaceDetector(min_face_size=40).as_data()
    assert detector.as_data()["detector"] == "mtcnn"
    with pytest.raises(ValueError, match="--face-min-size"):
        FaceDetector(min_face_size=8)


def test_detection_restores_torch_threads(detector):
    import torch

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        detector.detect([Image.new("L", (64, 64))])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_detection_round_trips_through_json_and_rejects_garbage():
    stored = detection().to_json()
    assert Detection.from_json(stored) == detection()
    for text in ("", "{}", '{"box": [0, 0, 2, 1], "landmarks": [], "score": 1}', "[1, 2]"):
        with pytest.raises(ValueError):
            Detection.from_json(text)


# --- face_region without the detector ----------------------------------------------------------

def test_no_face_raises_a_one_line_reason_in_detect_mode():
    img = Image.new("L", (100, 80))
    with pytest.raises(NoFaceError, match=r"^no face found$"):
        face_region(img, None, FaceSpec(mode="detect"))
    with pytest.raises(NoFaceError, match=r"^no face found \(best score 0\.42 < min 0\.9\)$"):
        face_region(img, detection(score=0.42), FaceSpec(mode="detect"))


def test_fallback_center_crops_the_middle_square():
    pixels = np.zeros((80, 120), np.uint8)
    pixels[:, 20:100] = 255
    for found in (None, detection(score=0.5)):
        out = face_region(Image.fromarray(pixels), found, FaceSpec(mode="fallback-center", align=True))
        assert out.size == (80, 80) and np.asarray(out).min() == 255


def test_mode_none_keeps_the_image():
    img = Image.new("RGB", (30, 20))
    assert face_region(img, detection(), FaceSpec()) is img


def test_box_crop_is_a_square_grown_by_the_margin_and_scales_with_the_image():
    for size in ((200, 100), (100, 50)):
        crop = face_region(Image.new("RGB", size), detection(), FaceSpec(mode="detect", margin=0.25))
        box_side = 0.5 * size[0]  # 0.5 x 0.6 of a 2:1 image: the width is the longer side
        assert crop.size == (round(box_side * 1.5),) * 2


def test_box_crop_moves_inside_the_image_at_a_border():
    pixels = np.full((100, 100), 255, np.uint8)
    edge = Detection(box=(0.0, 0.3, 0.4, 0.7), landmarks=((0.1, 0.4),) * 5, score=1.0)
    crop = face_region(Image.fromarray(pixels), edge, FaceSpec(mode="detect", margin=0.2))
    assert crop.size == (56, 56) and np.asarray(crop).min() == 255  # shifted right, no black padding


# --- the detector on real faces -----------------------------------------------------------------

@requires_assets
def test_every_lfw_face_is_found_with_landmarks_inside_its_box(detector, photos):
    found = detector.detect(photos)
    assert all(face is not None and face.score > 0.9 for face in found)
    for face in found:
        x0, y0, x1, y1 = face.box
        (lx, ly), (rx, ry) = face.landmarks[:2]
        assert x0 < lx < rx < x1 and y0 < min(ly, ry) < y1
        assert Detection.from_json(face.to_json()) == face


@requires_assets
def test_batched_detection_matches_one_at_a_time_across_sizes_and_modes(detector, photos):
    mixed = [photos[0], photos[1].convert("RGB").resize((500, 500)), photos[2].crop((0, 0, 250, 180)),
             photos[3], Image.new("L", (40, 30))]
    batched = detector.detect(mixed)
    single = [detector.detect([img])[0] for img in mixed]
    assert batched[-1] is None and single[-1] is None
    for a, b in zip(batched[:-1], single[:-1]):
        assert np.allclose(a.box, b.box, atol=1e-4) and abs(a.score - b.score) < 1e-4


@requires_assets
def test_normalised_boxes_fit_the_image_decoded_at_half_scale(detector, photos):
    full, half = detector.detect([photos[4], photos[4].resize((125, 125), Image.BILINEAR)])
    assert iou(full.box, half.box) > 0.8
    spec = FaceSpec(mode="detect")
    assert abs(face_region(photos[4].resize((125, 125)), full, spec).width
               - face_region(photos[4], full, spec).width / 2) <= 1


@requires_assets
def test_faces_pasted_into_scenes_are_found_where_they_were_pasted(detector, scenes):
    images, expected, _ = scenes
    for face, box in zip(detector.detect(images), expected):
        assert face is not None and iou(pixel_box(face, SCENE), box) > 0.6


@requires_assets
def test_texture_without_a_face_gives_none_and_a_reason(detector):
    rng = np.random.default_rng(3)
    plain = [textured_background(rng, SCENE) for _ in range(4)]
    found = detector.detect(plain)
    assert found == [None] * 4
    with pytest.raises(NoFaceError, match="no face found"):
        face_region(plain[0], found[0], FaceSpec(mode="detect"))
    assert face_region(plain[0], found[0], FaceSpec(mode="fallback-center")).size == (480, 480)


@requires_assets
def test_alignment_puts_the_eyes_on_the_template_even_for_a_tilted_head(detector, photos):
    tilted = [photo.rotate(angle, Image.BILINEAR) for photo, angle in zip(photos[:4], (0, 20, -15, 25))]
    margin = 0.3
    spec = FaceSpec(mode="detect", align=True, margin=margin)
    aligned = [face_region(img, face, spec) for img, face in zip(tilted, detector.detect(tilted))]
    for img, again in zip(aligned, detector.detect(aligned)):
        eyes = np.asarray(again.landmarks[:2]) * img.size
        target = template_points(img.width, margin)[:2]
        assert np.abs(eyes - target).max() < 0.05 * img.width
        assert abs(eyes[0, 1] - eyes[1, 1]) < 0.03 * img.width  # level eyes: the tilt is undone


@requires_assets
def test_the_emotion_teacher_sees_a_different_picture_in_the_crop(detector, scenes):
    images, _, photo_crops = scenes
    spec = FaceSpec(mode="detect")
    crops = [face_region(img, face, spec) for img, face in zip(images, detector.detect(images))]
    whole, cropped, reference = emotion_labels(images), emotion_labels(crops), emotion_labels(photo_crops)
    assert (whole != cropped).mean() >= 0.4  # the crop changes the teacher's answer for many scenes
    assert (cropped == reference).mean() > (whole == reference).mean()  # and brings it closer to the face's
