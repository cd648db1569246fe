import pytest

from extractor.datasets.splits import heldout_mask


def test_split_is_deterministic_near_fraction_and_stable_when_pool_grows():
    keys = [f"digest-{i}" for i in range(5000)]
    mask = heldout_mask(keys, 0.1)
    assert 0.08 < mask.mean() < 0.12
    assert (heldout_mask(keys, 0.1) == mask).all()
    grown = heldout_mask(keys + [f"new-{i}" for i in range(100)], 0.1)
    assert (grown[:5000] == mask).all()


def test_groups_stay_together():
    groups = ["alice"] * 10 + ["bob"] * 10 + [f"p{i}" for i in range(200)]
    mask = heldout_mask(groups, 0.3)
    assert len(set(mask[:10])) == 1 and len(set(mask[10:20])) == 1


def test_fraction_is_validated():
    with pytest.raises(ValueError, match="--heldout"):
        heldout_mask(["a"], 1.0)
