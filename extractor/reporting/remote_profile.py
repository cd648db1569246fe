"""A teacher as its request ledger saw it: latency percentiles per image and per request, queries and their cost.

An HTTP teacher has no model file to time here; what it cost is in the store, which records every request
of every labeling job (``extractor.ledger.RequestRecord``): its images, the images charged for it (every
attempt), its wall time (retries and backoff included) and its error, if any.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from extractor.store.label_store import LabelStore

log = logging.getLogger(__name__)

PERCENTILES = (50, 95)


def remote_profile(run: dict, price_per_1000: float | None = None) -> dict | None:
    """The ledger figures of a training run's teacher, every job that asked it included (labels, views,
    probes), or None when its store is gone or holds none.

    Args:
        run: a run.json written by `extractor train` (its store and teacher fingerprint).
        price_per_1000: what the teacher's owner charges per 1000 images sent (--price-per-1000).
    """
    store = Path(run["config"]["store"])
    if not store.is_file():
        log.warning("the label store %s is gone: the teacher's requests are not reported", store)
        return None
    with LabelStore(store) as opened:
        requests = opened.teacher_requests(run["teacher"]["fingerprint"])
    return ledger_figures(requests, price_per_1000)


def ledger_figures(requests: pd.DataFrame, price_per_1000: float | None = None) -> dict | None:
    """Requests, images sent (every attempt, what a paid API bills), retries, failed requests, latency
    percentiles of the answered requests in ms (``image_p50``: a request's wall time over its images), and
    the cost where a price is given. None without requests carrying images (metadata reads carry none)."""
    asked = requests[requests["images"] > 0]
    if asked.empty:
        return None
    answered = asked[asked["error"].isna()]
    request_ms = answered["latency_s"].to_numpy() * 1000
    image_ms = request_ms / answered["images"].to_numpy()
    latency = None
    if len(answered):
        latency = {f"{unit}_p{q}": float(np.percentile(values, q))
                   for unit, values in (("image", image_ms), ("request", request_ms)) for q in PERCENTILES}
    sent = int(asked["images_sent"].sum())
    return {"requests": len(asked), "images_sent": sent, "retries": int(asked["retries"].sum()),
            "failed_requests": int(asked["error"].notna().sum()),
            "mean_request_images": float(asked["images"].mean()), "latency_ms": latency,
            "price_per_1000": price_per_1000,
            "cost": None if price_per_1000 is None else sent * price_per_1000 / 1000}
