"""The decoded-image cache is refused in one line when it would not fit in memory."""
import pytest

from extractor.errors import ConfigError
from extractor.training.answers import available_memory, require_memory


def test_a_cache_larger_than_the_memory_share_is_refused_naming_both_sizes():
    with pytest.raises(ConfigError, match=r"need 8\.0 GiB, more than 70% of the 4\.0 GiB"):
        require_memory(8 * 2**30, 4 * 2**30)


def test_a_cache_that_fits_or_an_unknown_memory_is_allowed():
    require_memory(2 * 2**30, 4 * 2**30)
    require_memory(2**40, None)


def test_this_machine_reports_its_available_memory():
    available = available_memory()
    assert available is None or available > 2**20
