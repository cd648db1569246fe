"""One file to one teacher-ready pixel array: read, decode, crop, resize (runs in worker processes)."""
from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from extractor.datasets.decode import ImageDecodeError, decode_image, one_line
from extractor.datasets.faces import Detection, FaceSpec, NoFaceError, face_region
from extractor.datasets.transforms import (
    PreprocessSpec,
    crop_and_resize,
    decode_min_side,
    to_pixels,
)
from extractor.datasets.views import ViewSpec, apply_view

log = logging.getLogger(__name__)

_WORKER_NICENESS = 10
_CHUNK = 16  # files per worker task: small enough to keep both cores busy, big enough to amortise IPC


@dataclass(frozen=True)
class LoadRequest:
    """Which file to load and how; picklable, so it can cross to a worker process."""

    path: Path
    digest: str
    spec: PreprocessSpec
    face: FaceSpec | None = None
    """Crop to the face first (detection known, or None where the detector found none)."""
    detection: Detection | None = None
    view: ViewSpec | None = None
    """An augmented view of the preprocessed pixels (``datasets.views``); None for the plain image."""


@dataclass(frozen=True)
class Loaded:
    """A worker's answer: uint8 (H, W, C) pixels, or the one-line reason there are none."""

    request: LoadRequest
    pixels: np.ndarray | None
    reason: str | None = None


def load_pixels(path: Path, digest: str, spec: PreprocessSpec, face: FaceSpec | None = None,
                detection: Detection | None = None) -> np.ndarray:
    """Reads and preprocesses one image file into uint8 (H, W, C) pixels.

    Raises:
        ImageDecodeError: with a one-line reason, for anything that is not a usable image,
            or a file whose content is no longer the one with ``digest``.
        NoFaceError: when ``face`` requires a face and ``detection`` has none.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"unreadable file: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ImageDecodeError("file changed since it was hashed")
    if face is None or face.mode == "none":
        image = decode_image(data, min_side=decode_min_side(spec))
    else:
        image = face_region(decode_image(data), detection, face)
    return to_pixels(crop_and_resize(image, spec), spec)


def load_many(requests: Sequence[LoadRequest]) -> list[Loaded]:
    """Loads a chunk of files, turning per-file failures into reasons (a worker's unit of work).

    One file never ends a job: whatever reading, decoding or preprocessing it raises (an
    ``Exception``, not a ``BaseException`` such as KeyboardInterrupt) becomes its one-line reason.
    """
    results = []
    for request in requests:
        try:
            pixels = load_pixels(request.path, request.digest, request.spec, request.face, request.detection)
            if request.view is not None:
                pixels = apply_view(pixels, request.view, request.digest)
            results.append(Loaded(request, pixels))
        except (ImageDecodeError, NoFaceError) as exc:
            results.append(Loaded(request, None, str(exc)))
        except Exception as exc:  # a decoder or transform bug on odd input: this file fails, the job goes on
            log.debug("cannot load %s", request.path, exc_info=True)
            reason = f"cannot decode or preprocess: {type(exc).__name__}: {one_line(exc)}"
            results.append(Loaded(request, None, reason))
    return results


@contextmanager
def load_parallel(requests: Iterable[LoadRequest], workers: int) -> Iterator[Iterator[Loaded]]:
    """Loads in ``workers`` processes, yielding results in request order (inline for 0 workers).

    ``requests`` may be a lazy iterator (e.g. fed by face detection as it goes).
    """
    chunks = _chunked(requests)
    if workers == 0:
        yield (item for chunk in chunks for item in load_many(chunk))
        return
    with fork_pool(workers, initializer=_yield_to_inference) as pool:
        yield (item for result in pool.imap(load_many, chunks) for item in result)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def fork_pool(workers: int, initializer: Callable[[], None] | None = None) -> Iterator[Pool]:
    """A fork ``Pool`` whose workers die on ``Pool.terminate()`` however soon it follows their start.

    fork: workers start in milliseconds and inherit what the parent loaded (spawn would re-import torch). But they
    also inherit the CLI's Python-level SIGTERM handler, and CPython drops a signal that arrives between fork() and
    the child's signal reset (``_PySignal_AfterFork``): a pool terminated right after it started could keep a
    worker alive, and ``terminate()`` then joined it forever. So the stop signals stay blocked while the workers
    fork; each worker sets their default action (SIGINT ignored: the parent ends the pool) before unblocking them,
    and a SIGTERM that came in between is delivered then.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_start_worker, initargs=(initializer,))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    with pool:
        yield pool


def _start_worker(initializer: Callable[[], None] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if initializer is not None:
        initializer()


def _chunked(requests: Iterable[LoadRequest]) -> Iterator[list[LoadRequest]]:
    chunk: list[LoadRequest] = []
    for request in requests:
        chunk.append(request)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _yield_to_inference() -> None:
    """Lowers a decode worker's priority: the cores are shared with the teacher's inference threads,
    which stall at every parallel barrier when a worker holds their core; decoding fills the gaps."""
    os.nice(_WORKER_NICENESS)
