"""Face detection and the face region handed to a teacher: what to crop, how, and when to give up."""
from __future__ import annotations

import importlib.metadata
import json
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

import numpy as np
from PIL import Image

from extractor.datasets.align import ARCFACE_TEMPLATE, align, similarity_transform
from extractor.errors import ConfigError

if TYPE_CHECKING:
    import torch

FaceMode = Literal["none", "detect", "fallback-center"]
FACE_MODES: tuple[str, ...] = ("none", "detect", "fallback-center")
FACES_VERSION = "1"  # bump whenever the code below changes what a spec or a detector produces


class NoFaceError(ValueError):
    """An image with no usable face where one is required; the message is a one-line reason."""


@dataclass(frozen=True)
class FaceSpec:
    """Whether and how the face region replaces the whole image before the teacher's preprocessing."""

    mode: FaceMode = "none"
    """"none" keeps the whole image; "detect" fails images without a face; "fallback-center" crops their centre."""
    margin: float = 0.2
    """Fraction of the face's size added on each side: 0.2 crops a square 1.4x the detected box."""
    align: bool = False
    """Warp the five landmarks onto `datasets.align.ARCFACE_TEMPLATE` instead of cropping the box."""
    min_score: float = 0.9
    """Detections less confident than this count as no face."""

    def __post_init__(self) -> None:
        if self.mode not in FACE_MODES:
            raise ConfigError(f"--faces must be one of {FACE_MODES}, got {self.mode!r}")
        if not 0.0 <= self.margin <= 2.0:
            raise ConfigError(f"--face-margin must be in [0, 2], got {self.margin}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"--face-min-score must be in [0, 1], got {self.min_score}")
        if self.align and self.mode == "none":
            raise ConfigError("--face-align needs --faces detect or fallback-center")

    def as_data(self) -> dict[str, Any]:
        """The spec as plain data for fingerprinting: default values dropped, version included.

        With mode "none" the other fields change nothing, so only the version is kept.
        """
        data: dict[str, Any] = {"version": FACES_VERSION}
        if self.mode == "none":
            return data
        for field in fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                data[field.name] = value
        if self.align:
            data["template"] = [list(point) for point in ARCFACE_TEMPLATE]
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> FaceSpec:
        """The spec that :meth:`as_data` gave ``data`` (None: no face stage); an unknown version is refused."""
        if not data:
            return cls()
        if data.get("version") != FACES_VERSION:
            raise ConfigError(f"stored face settings have version {data.get('version')!r}; this extractor reads "
                              f"version {FACES_VERSION}: upgrade extractor or label again")
        return cls(**{key: value for key, value in data.items() if key not in ("version", "template")})


@dataclass(frozen=True)
class Detection:
    """The most confident face in an image, in coordinates normalised by the oriented image's size.

    Normalised coordinates fit the same image decoded at any scale (JPEG draft decoding included).
    """

    box: tuple[float, float, float, float]
    """(x0, y0, x1, y1) as fractions of width and height, clipped to the image."""
    landmarks: tuple[tuple[float, float], ...]
    """Five (x, y) fractions: left eye, right eye, nose, mouth left, mouth right ("left" = image left)."""
    score: float
    """The detector's confidence in [0, 1]."""

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = self.box
        if not 0.0 <= x0 <= x1 <= 1.0 or not 0.0 <= y0 <= y1 <= 1.0:
            raise ValueError(f"box must be (x0, y0, x1, y1) with 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1, "
                             f"got {self.box}")
        if len(self.landmarks) != 5 or any(len(point) != 2 or not all(0.0 <= v <= 1.0 for v in point)
                                           for point in self.landmarks):
            raise ValueError(f"landmarks must be five (x, y) pairs in [0, 1], got {self.landmarks}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score}")

    def to_json(self) -> str:
        return json.dumps({"box": list(self.box), "landmarks": [list(p) for p in self.landmarks],
                           "score": self.score}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Detection:
        """Parses `to_json` output.

        Raises:
            ValueError: for text that is not a stored detection.
        """
        try:
            data = json.loads(text)
            return cls(box=tuple(float(v) for v in data["box"]),
                       landmarks=tuple((float(x), float(y)) for x, y in data["landmarks"]),
                       score=float(data["score"]))
        except (TypeError, KeyError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise ValueError(f"not a stored face detection: {exc}") from None


class FaceDetector:
    """MTCNN (facenet-pytorch) on CPU, batched by letterboxing every image onto one square canvas.

    Every image is resized so its longer side fills ``canvas`` pixels and padded black at the
    bottom/right, so any mix of sizes runs as one batch and an image's detection does not depend on
    the other images in its batch. Faces smaller than ``min_face_size / canvas`` of the longer side
    are not searched for; that ratio, not the canvas, sets the cost (the detector's image pyramid
    starts at ``canvas * 12 / min_face_size`` pixels).
    """

    def __init__(self, *, canvas: int = 160, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 batch_size: int = 16, threads: int = 1) -> None:
        """Loads the MTCNN weights that ship inside facenet-pytorch.

        Args:
            canvas: side of the square detection canvas in pixels.
            min_face_size: smallest face searched for, in canvas pixels.
            thresholds: P-, R- and O-net score thresholds (MTCNN's defaults).
            factor: scale step of the image pyramid (MTCNN's default).
            batch_size: images per forward pass; 16 used the least CPU per image of 1 to 64.
            threads: torch intra-op threads while detecting (restored afterwards). One thread used the
                least CPU per image on 2 cores, and two collapsed to 5-20 img/s (from about 100) whenever
                another process held a core: OpenMP workers spin at every barrier. Use processes, each with
                its own detector, to occupy more cores.
        """
        if canvas < 48:
            raise ConfigError(f"--face-canvas must be >= 48 pixels, got {canvas}")
        if not 12 <= min_face_size <= canvas:
            raise ConfigError(f"--face-min-size must be in [12, {canvas}] canvas pixels, got {min_face_size}")
        if len(thresholds) != 3 or not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError(f"detector thresholds must be three values in (0, 1), got {thresholds}")
        if not 0.1 <= factor < 1.0:
            raise ValueError(f"pyramid factor must be in [0.1, 1), got {factor}")
        if batch_size < 1 or threads < 1:
            raise ValueError(f"batch size and threads must be >= 1, got {batch_size} and {threads}")
        self.canvas, self.min_face_size = canvas, min_face_size
        self.thresholds, self.factor = tuple(thresholds), factor
        self.batch_size, self.threads = batch_size, threads
        import torch  # torch and facenet-pytorch load only when faces are detected: a fast CLI start
        from facenet_pytorch import MTCNN

        self._mtcnn = MTCNN(min_face_size=min_face_size, thresholds=list(thresholds), factor=factor,
                            keep_all=True, select_largest=False, device=torch.device("cpu"))
        for net in (self._mtcnn.pnet, self._mtcnn.rnet, self._mtcnn.onet):
            # PyTorch's CPU max-pooling is 5-10x faster channels-last; detection runs about 2x faster.
            net.to(memory_format=torch.channels_last)
            net.register_forward_pre_hook(_to_channels_last)

    def as_data(self) -> dict[str, Any]:
        """Every setting that can change a detection, as plain data (batch size and threads cannot)."""
        return {"detector": "mtcnn", "package": f"facenet-pytorch {importlib.metadata.version('facenet-pytorch')}",
                "canvas": self.canvas, "min_face_size": self.min_face_size, "thresholds": list(self.thresholds),
                "factor": self.factor, "resize": "letterbox-top-left-bilinear-gap2", "select": "max-score",
                "version": FACES_VERSION}

    def detect(self, images: Sequence[Image.Image]) -> list[Detection | None]:
        """The most confident face of each image, or None where the detector found none.

        Args:
            images: oriented PIL images of any size and mode.
        """
        import torch

        found: list[Detection | None] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            canvases, extents = zip(*(_letterbox(img, self.canvas) for img in chunk))
            with torch.inference_mode(), _torch_threads(self.threads):
                boxes, scores, points = self._mtcnn.detect(np.stack(canvases), landmarks=True)  # (B, S, S, 3)
            found.extend(_best(*args) for args in zip(boxes, scores, points, extents))
        return found


def face_region(img: Image.Image, detection: Detection | None, spec: FaceSpec) -> Image.Image:
    """The part of ``img`` handed to the teacher's own preprocessing.

    Args:
        img: the oriented image, at any scale of the one ``detection`` came from.
        detection: the image's face, or None where the detector found none.
        spec: what to crop.

    Returns:
        ``img`` itself for mode "none"; otherwise a square: the detected box grown by the margin
        (shifted inside the image where it fits, padded black where it cannot), its aligned warp,
        or, for mode "fallback-center" without a face, the centred square of the shorter side.

    Raises:
        NoFaceError: for mode "detect" when there is no face at least ``spec.min_score`` confident.
    """
    if spec.mode == "none":
        return img
    width, height = img.size
    if detection is not None and detection.score >= spec.min_score:
        if spec.align:
            points = np.asarray(detection.landmarks) * (width, height)
            # Keep the landmarks' own scale: no detail lost or invented before the teacher resizes.
            scale = np.sqrt(abs(np.linalg.det(similarity_transform(ARCFACE_TEMPLATE, points)[:2, :2])))
            return align(img, points, max(1, round(scale * (1 + 2 * spec.margin))), spec.margin)
        return _square_around(img, detection.box, spec.margin)
    if spec.mode == "fallback-center":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return img.crop((left, top, left + side, top + side))
    if detection is None:
        raise NoFaceError("no face found")
    raise NoFaceError(f"no face found (best score {detection.score:.2f} < min {spec.min_score:g})")


def _square_around(img: Image.Image, box: tuple[float, float, float, float], margin: float) -> Image.Image:
    """The square on the box's longer side grown by ``margin`` per side, moved inside the image if it fits."""
    width, height = img.size
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    side = max(1, round(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
    corner = []
    for centre, extent in (((x0 + x1) / 2, width), ((y0 + y1) / 2, height)):
        start = round(centre - side / 2)
        corner.append(min(max(start, 0), extent - side) if side <= extent else start)
    left, top = corner
    return img.crop((left, top, left + side, top + side))  # PIL pads outside the image with black


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _to_channels_last(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    import torch

    return (args[0].contiguous(memory_format=torch.channels_last),)


def _letterbox(img: Image.Image, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(side, side, 3) uint8 canvas with the image scaled into its top-left corner, and the scaled size."""
    width, height = img.size
    scale = side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != img.size:
        # Before RGB conversion (3x fewer pixels for "L"); reducing_gap box-reduces first: 4x faster on a
        # 12-megapixel photo, and boxes move by about one canvas pixel.
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    canvas[:size[1], :size[0]] = np.asarray(img.convert("RGB"))
    return canvas, size


def _best(boxes: Any, scores: Any, points: Any, extent: tuple[int, int]) -> Detection | None:
    """The most confident of one image's MTCNN faces, normalised by its extent on the canvas."""
    if boxes is None:
        return None
    scores = np.asarray(scores, dtype=np.float64)
    best = int(np.argmax(scores))
    width, height = extent
    box = np.clip(np.asarray(boxes[best], dtype=np.float64) / (width, height, width, height), 0.0, 1.0)
    marks = np.clip(np.asarray(points[best], dtype=np.float64) / (width, height), 0.0, 1.0)
    # Rounded to 1e-6 (0.004 px on a 4k image) so the JSON is short and round-trips exactly.
    return Detection(box=tuple(round(float(v), 6) for v in box),
                     landmarks=tuple((round(float(x), 6), round(float(y), 6)) for x, y in marks),
                     score=round(float(np.clip(scores[best], 0.0, 1.0)), 6))
