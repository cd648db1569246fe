"""Face detection ahead of labeling: runs once per image and detector, in a background thread."""
from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from extractor.datasets.decode import ImageDecodeError, decode_image
from extractor.datasets.faces import Detection, FaceDetector, FaceSpec
from extractor.datasets.folder import FolderFile
from extractor.datasets.loading import LoadRequest
from extractor.datasets.transforms import PreprocessSpec
from extractor.fingerprint import stable_hash
from extractor.store import LabelStore

log = logging.getLogger(__name__)

_DONE = object()


def detector_fingerprint(detector: FaceDetector) -> str:
    return stable_hash(detector.as_data())


class FaceStage:
    """Turns files into face-cropping load requests, detecting where the store has no detection.

    Stored detections are used at once; the rest are detected in batches on a background thread
    that writes them to the store through its own connection, so detection overlaps with decoding
    and teacher inference downstream.
    """

    def __init__(self, store_path: Path, detector: FaceDetector, face: FaceSpec, spec: PreprocessSpec, *,
                 workers: int, batch_size: int = 32) -> None:
        self.store_path, self.detector, self.face, self.spec = store_path, detector, face, spec
        self.fingerprint = detector_fingerprint(detector)
        self.workers, self.batch_size = workers, batch_size
        self.detected = 0

    def requests(self, files: Sequence[FolderFile], known: dict[str, str | None]) -> Iterator[LoadRequest]:
        """Load requests for ``files``: those with a known detection first, then as detection goes."""
        pending = [f for f in files if f.digest not in known]
        for file in files:
            if file.digest in known:
                stored = known[file.digest]
                yield self._request(file, Detection.from_json(stored) if stored else None)
        if not pending:
            return
        results: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()
        worker = threading.Thread(target=self._detect_all, args=(pending, results, stop), daemon=True,
                                  name="face-detection")
        worker.start()
        try:
            while (item := results.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield from item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    results.get_nowait()
                except queue.Empty:
                    worker.join(0.05)

    def _request(self, file: FolderFile, detection: Detection | None) -> LoadRequest:
        return LoadRequest(file.path, file.digest, self.spec, self.face, detection)

    def _detect_all(self, files: list[FolderFile], results: queue.Queue, stop: threading.Event) -> None:
        """Detects in ``workers`` processes (one torch thread each: MTCNN with two threads on shared
        cores is several times slower), writing each batch to the store as it comes."""
        batches = [files[start:start + self.batch_size] for start in range(0, len(files), self.batch_size)]
        try:
            with LabelStore(self.store_path) as store, _detection_pool(self.detector, self.workers) as detect:
                for batch, found in zip(batches, detect(batches)):
                    if stop.is_set():
                        return
                    store.put_detections(self.fingerprint, [(digest, detection.to_json() if detection else None)
                                                            for digest, detection in found.items()])
                    self.detected += len(found)
                    results.put([self._request(file, found.get(file.digest)) for file in batch])
        except BaseException as exc:  # handed to the consuming thread, which re-raises it
            results.put(exc)
        finally:
            results.put(_DONE)


_worker_detector: FaceDetector | None = None


@contextmanager
def _detection_pool(detector: FaceDetector, workers: int) -> Iterator[Callable[[list], Iterator[dict]]]:
    global _worker_detector
    _worker_detector = detector
    if workers == 0:
        yield lambda batches: map(_detect_batch, batches)
        return
    # fork: the children inherit the loaded detector instead of re-reading its weights.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield lambda batches: pool.imap(_detect_batch, batches)


def _detect_batch(files: list[FolderFile]) -> dict[str, Detection | None]:
    """Detections of the readable files of a batch, by digest (unreadable files are left out:
    the decode worker reports them, with their reason, in the label job)."""
    detector = _worker_detector
    if detector is None:
        raise RuntimeError("_detect_batch runs only inside _detection_pool")
    images, readable = [], []
    for file in files:
        try:
            images.append(decode_image(file.path.read_bytes(), min_side=detector.canvas))
            readable.append(file.digest)
        except (ImageDecodeError, OSError):
            continue
    return dict(zip(readable, detector.detect(images))) if images else {}
