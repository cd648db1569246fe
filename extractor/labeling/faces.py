"""Face detection ahead of labeling: runs once per image and detector, in a background thread."""
from __future__ import annotations

import logging
import queue
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from extractor.datasets.decode import decode_image
from extractor.datasets.faces import Detection, FaceDetector, FaceSpec
from extractor.datasets.folder import FolderFile
from extractor.datasets.loading import LoadRequest, fork_pool
from extractor.datasets.transforms import PreprocessSpec
from extractor.fingerprint import detector_fingerprint

log = logging.getLogger(__name__)

_DONE = object()


class FaceStage:
    """Turns files into face-cropping load requests, detecting where the store has no detection.

    Stored detections are used at once; the rest are detected in batches on a background thread,
    so detection overlaps with decoding and teacher inference downstream. New detections are held
    for the job, which takes them (:meth:`take_detections`) and stores them with its next commit:
    this stage never touches the store.
    """

    def __init__(self, detector: FaceDetector, face: FaceSpec, spec: PreprocessSpec, *,
                 workers: int, batch_size: int = 32) -> None:
        self.detector, self.face, self.spec = detector, face, spec
        self.fingerprint = detector_fingerprint(detector.as_data())
        self.workers, self.batch_size = workers, batch_size
        self.detected = 0
        self._new: list[tuple[str, str | None]] = []
        self._new_lock = threading.Lock()

    def take_detections(self) -> list[tuple[str, str | None]]:
        """(digest, detection JSON or None for no face) found since the last call, for the store."""
        with self._new_lock:
            new, self._new = self._new, []
        return new

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
        cores is several times slower), holding each batch's detections for the job as it comes."""
        batches = [files[start:start + self.batch_size] for start in range(0, len(files), self.batch_size)]
        try:
            with _detection_pool(self.detector, self.workers) as detect:
                for batch, found in zip(batches, detect(batches)):
                    if stop.is_set():
                        return
                    with self._new_lock:  # before the requests go out: the job stores them with their answers
                        self._new.extend((digest, detection.to_json() if detection else None)
                                         for digest, detection in found.items())
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
    with fork_pool(workers) as pool:
        yield lambda batches: pool.imap(_detect_batch, batches)


def _detect_batch(files: list[FolderFile]) -> dict[str, Detection | None]:
    """Detections of the readable files of a batch, by digest (unreadable files are left out:
    the decode worker reports them, with their reason, in the label job).

    One odd image never ends the job: if the batch raises, each image is detected alone, and one
    that still raises is left out like an unreadable file (no detection stored, so a re-run retries).
    """
    detector = _worker_detector
    if detector is None:
        raise RuntimeError("_detect_batch runs only inside _detection_pool")
    images, readable = [], []
    for file in files:
        try:
            images.append(decode_image(file.path.read_bytes(), min_side=detector.canvas))
            readable.append(file.digest)
        except Exception as exc:  # ImageDecodeError, OSError, or anything else one file can raise
            log.debug("face detection skips %s: %s", file.path, exc)
    if not images:
        return {}
    try:
        return dict(zip(readable, detector.detect(images)))
    except Exception:
        log.debug("face detection failed on a batch; detecting its images one at a time", exc_info=True)
    found: dict[str, Detection | None] = {}
    for digest, image in zip(readable, images):
        try:
            found[digest] = detector.detect([image])[0]
        except Exception as exc:
            log.debug("face detection failed on %s: %s", digest[:12], exc)
    return found
