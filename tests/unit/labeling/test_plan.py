"""The label plan: what a budget buys, in what order."""
import hashlib
from pathlib import Path

from extractor.datasets.folder import FolderFile
from extractor.datasets.views import ViewSpec
from extractor.labeling.plan import build_plan, rank


def _pool(classes=10, per_class=60):
    """A pool written as class folders 0/ ... 9/, as a sorted tree lists it."""
    files = [FolderFile(f"{c}/{i:03d}.png", Path(f"/pool/{c}/{i:03d}.png"), 100, 0,
                        hashlib.sha256(f"{c}-{i}".encode()).hexdigest())
             for c in range(classes) for i in range(per_class)]
    return sorted(files, key=lambda f: f.relative_path)


def _plan(files, cached=(), allowed=None, **kwargs):
    return build_plan(files, cached=set(cached), view_done={}, allowed=allowed, is_image=lambda f: True, **kwargs)


def test_a_budget_buys_every_class_in_proportion():
    plan = _plan(_pool(), allowed=300)
    counts = plan.by_folder()
    assert sorted(counts) == [str(c) for c in range(10)] and sum(counts.values()) == 300
    assert min(counts.values()) >= 15 and max(counts.values()) <= 45  # 30 each expected; binomial spread


def test_path_order_keeps_the_first_files():
    plan = _plan(_pool(), allowed=300, order="path")
    assert plan.by_folder() == {"0": 60, "1": 60, "2": 60, "3": 60, "4": 60}


def test_a_resumed_job_buys_the_rest_of_the_same_order_and_a_larger_budget_extends_it():
    pool = _pool()
    first = _plan(pool, allowed=100, seed=7).purchases[0].files
    resumed = _plan(pool, cached={f.digest for f in first[:60]}, allowed=40, seed=7).purchases[0].files
    assert resumed == first[60:]
    larger = _plan(pool, allowed=250, seed=7).purchases[0].files
    assert larger[:100] == first


def test_the_order_does_not_depend_on_which_other_files_are_there():
    pool = _pool()
    whole = [f.digest for f in _plan(pool, seed=3).purchases[0].files]
    half = [f.digest for f in _plan(pool[::2], seed=3).purchases[0].files]
    assert [d for d in whole if d in set(half)] == half


def test_another_seed_is_another_sample():
    pool = _pool()
    a = {f.digest for f in _plan(pool, allowed=100, seed=0).purchases[0].files}
    b = {f.digest for f in _plan(pool, allowed=100, seed=1).purchases[0].files}
    assert a != b and len(a & b) < 60


def test_the_rank_is_a_seeded_hash_of_the_digest():
    assert rank("abc", 5) == hashlib.sha256(b"5:abc").hexdigest()


def test_duplicates_cached_and_not_images_are_counted_apart():
    pool = _pool(classes=2, per_class=5)
    dup = FolderFile("zz/copy.png", Path("/pool/zz/copy.png"), 100, 0, pool[0].digest)
    text = FolderFile("README.md", Path("/pool/README.md"), 10, 0, "f" * 64)
    plan = build_plan(pool + [dup, text], cached={pool[1].digest}, view_done={}, allowed=None,
                      is_image=lambda f: f.relative_path.endswith(".png"))
    assert (plan.images, plan.skipped, plan.duplicates, plan.cached, plan.queries) == (11, 1, 1, 1, 9)
    assert plan.held_back == 0


def test_views_come_after_every_plain_image_and_the_budget_buys_plain_first():
    pool = _pool(classes=1, per_class=10)
    view = ViewSpec(index=1, augment=("flip",))
    plan = build_plan(pool, cached=set(), view_done={view: {pool[0].digest}}, allowed=12, is_image=lambda f: True)
    assert [p.view for p in plan.purchases] == [None, view]
    assert [len(p.files) for p in plan.purchases] == [10, 2]
    assert plan.held_back == 7 and plan.view_cached == 1
