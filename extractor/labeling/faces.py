"""Face detection ahead of labeling: runs once per image and detector, in a background thread."""
from __future__ import annotations

import logging
import queue
import threading
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Iterator, Mapping, Sequence

from extractor.datasets.decode import decode_image
from extractor.datasets.faces import Detection, FaceDetector, FaceSpec
from extractor.datasets.folder import FolderFile
from extractor.datasets.loading import LoadRequest, fork_pool
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.views import ViewSpec

log = logging.getLogger(__name__)

_DONE = object()


class FaceStage:
    """Turns files into face-cropping load requests, detecting where the store has no detection.

    Stored detections (``known``: JSON text by digest, None for no face) are used at once; the rest are
    detected in batches on a background thread, so detection overlaps with decoding and teacher inference
    downstream. Each batch's new detections go to ``keep`` (from that thread) before its requests go out:
    the job stores them with its next commit; this stage never touches the store.
    """

    def __init__(self, detector: FaceDetector, face: FaceSpec, spec: PreprocessSpec, *,
                 known: Mapping[str, str | None], keep: Callable[[list[tuple[str, str | None]]], None],
                 workers: int, batch_size: int = 32) -> None:
        self.detector, self.face, self.spec, self.known, self.keep = detector, face, spec, dict(known), keep
        self.workers, self.batch_size = workers, batch_size
        self.detected = 0

    def requests(self, files: Sequence[FolderFile], view: ViewSpec | None = None) -> Iterator[LoadRequest]:
        """Load requests for ``view`` of ``files`` (None: the plain image): those with a known detection first,
        then as detection goes."""
        requests = self._requests(files)
        return requests if view is None else (replace(request, view=view) for request in requests)

    def _requests(self, files: Sequence[FolderFile]) -> Iterator[LoadRequest]:
        pending = [f for f in files if f.digest not in self.known]
        for file in files:
            if file.digest in self.known:
                stored = self.known[file.digest]
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
                    new = [(digest, detection.to_json() if detection else None) for digest, detection in found.items()]
                    self.keep(new)  # before the requests go out: the job stores them with their answers
                    self.known.update(new)  # a view's pass crops the faces the plain pass found
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
