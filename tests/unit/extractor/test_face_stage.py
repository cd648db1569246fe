from extractor.datasets.faces import Detection, FaceSpec
from extractor.datasets.folder import hash_files, list_files
from extractor.datasets.transforms import PreprocessSpec
from extractor.labeling.faces import FaceStage
from tests.images import random_image, write_jpegs

FACE = Detection(box=(0.2, 0.2, 0.8, 0.8), landmarks=((0.4, 0.4), (0.6, 0.4), (0.5, 0.5), (0.4, 0.6), (0.6, 0.6)),
                 score=0.99)


class FlakyDetector:
    """Finds a face in every image, but raises on any batch holding a 7x7 one."""

    canvas = 64

    def as_data(self) -> dict:
        return {"detector": "flaky"}

    def detect(self, images):
        if any(img.size == (7, 7) for img in images):
            raise RuntimeError("odd image")
        return [FACE for _ in images]


def test_an_image_that_breaks_the_detector_or_the_decoder_loses_only_its_own_detection(tmp_path):
    write_jpegs(tmp_path, 3)
    random_image(5, size=(7, 7)).save(tmp_path / "tiny.png")
    (tmp_path / "broken.jpg").write_bytes((tmp_path / "img_000.jpg").read_bytes()[:300])
    files = hash_files(list_files(tmp_path), {})
    kept: list[tuple[str, str | None]] = []
    stage = FaceStage(FlakyDetector(), FaceSpec(mode="detect"), PreprocessSpec(size=16), known={}, keep=kept.extend,
                      workers=0)
    found = {request.path.name: request.detection for request in stage.requests(files)}
    assert found == {"img_000.jpg": FACE, "img_001.jpg": FACE, "img_002.jpg": FACE, "tiny.png": None,
                     "broken.jpg": None}
    stored = dict(kept)
    assert len(stored) == 3 and all(Detection.from_json(text) == FACE for text in stored.values())
