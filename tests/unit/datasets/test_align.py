import numpy as np
import pytest
from PIL import Image
from skimage.measure import label, regionprops

from extractor.datasets.align import (
    ARCFACE_TEMPLATE,
    align,
    similarity_transform,
    template_points,
)


def rotation(degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    angle = np.deg2rad(degrees)
    matrix = np.eye(3)
    matrix[:2, :2] = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix[:2, 2] = shift
    return matrix


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def test_template_is_arcface_in_the_unit_square():
    assert len(ARCFACE_TEMPLATE) == 5
    (left_x, left_y), (right_x, right_y), (nose_x, nose_y) = ARCFACE_TEMPLATE[:3]
    assert left_x < nose_x < right_x and abs(left_y - right_y) < 0.01 and nose_y > left_y
    assert ARCFACE_TEMPLATE[0] == (round(38.7946 / 112, 6), round(52.1963 / 112, 6))


def test_similarity_transform_recovers_a_known_transform_exactly():
    points = np.random.default_rng(0).uniform(0, 100, (5, 2))
    truth = rotation(33.0, 1.7, (12.0, -40.0))
    assert np.allclose(similarity_transform(points, apply(truth, points)), truth)


def test_similarity_transform_never_reflects():
    points = np.random.default_rng(1).uniform(0, 100, (5, 2))
    mirrored = points * [-1, 1]
    assert np.linalg.det(similarity_transform(points, mirrored)[:2, :2]) > 0


def test_similarity_transform_rejects_coincident_or_mismatched_points():
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), np.zeros((4, 2)))


def test_landmarks_already_on_the_template_give_back_the_image():
    pixels = np.random.default_rng(2).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    out = align(Image.fromarray(pixels), template_points(112, 0.0), 112)
    assert out.mode == "RGB" and np.abs(np.asarray(out, dtype=int) - pixels).max() <= 1


@pytest.mark.parametrize("degrees,face_px,size,margin", [(30.0, 336, 112, 0.25), (-70.0, 100, 96, 0.0),
                                                         (10.0, 560, 64, 0.4)])
def test_dots_at_the_landmarks_land_on_the_template(degrees, face_px, size, margin):
    # Five dots drawn where a rotated, scaled, shifted template puts the landmarks; 2.5 px after alignment.
    landmarks = apply(rotation(degrees, face_px, (150.0, 150.0)), np.asarray(ARCFACE_TEMPLATE))
    radius = 2.5 * face_px * (1 + 2 * margin) / size
    ys, xs = np.mgrid[0:800, 0:800] + 0.5  # pixel centres in continuous coordinates
    near = [np.hypot(xs - x, ys - y) < radius for x, y in landmarks]
    img = Image.fromarray(np.where(np.any(near, axis=0), 255, 0).astype(np.uint8))
    out = align(img, landmarks, size, margin)
    assert out.size == (size, size) and out.mode == "L"
    found = [region.centroid_weighted[::-1] for region in regionprops(label(np.asarray(out) > 40), np.asarray(out))]
    expected = template_points(size, margin)
    assert len(found) == 5
    for point in expected:
        assert min(np.hypot(*(np.asarray(f) + 0.5 - point)) for f in found) < 0.4  # half a pixel off would fail
