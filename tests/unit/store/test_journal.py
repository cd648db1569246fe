"""The request journal: every charge on record in the store before it is sent, settled after, counted after kills."""
import sqlite3
import threading

import pytest

from extractor.errors import QueryBudgetExceeded
from extractor.ledger import Ledger, RequestRecord
from extractor.store.label_store import LabelStore

IDENTITY = "identity"


def requests(path):
    """(images_sent, status) of each request row, as another process reads them."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT images_sent, status FROM requests ORDER BY id").fetchall()


@pytest.fixture
def journaled(tmp_path):
    path = tmp_path / "labels.db"
    with LabelStore(path) as store, store.writer("label"):
        job = store.begin_job("label", IDENTITY, "t" * 64, "p" * 64, "/r", {})
        journal = store.journal(job, IDENTITY)
        ledger = Ledger(20)
        ledger.keep_in(journal)
        yield path, store, ledger
        journal.close()


def test_a_charge_is_on_record_before_the_request_goes_and_settled_after(journaled):
    path, store, ledger = journaled
    ledger.charge(4)
    assert requests(path) == [(4, "sending")]  # committed: a kill -9 now still counts these 4 images
    ledger.charge(4)  # the same request's retry
    assert requests(path) == [(8, "sending")]
    ledger.record(RequestRecord(0.0, 4, 8, 200, 0.1, retries=1))
    assert requests(path) == [(8, "200")]
    assert store.images_sent(IDENTITY) == 8


def test_each_thread_is_its_own_request(journaled):
    path, _, ledger = journaled

    def request():
        ledger.charge(2)
        ledger.record(RequestRecord(0.0, 2, 2, "ok", 0.0))

    threads = [threading.Thread(target=request) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert requests(path) == [(2, "ok")] * 5


def test_a_refusal_and_an_unrecorded_request_stay_on_record(journaled):
    path, store, ledger = journaled
    ledger.charge(16)
    with pytest.raises(QueryBudgetExceeded):
        ledger.charge(8)  # 24 > 20: nothing charged, nothing on record for it
    assert requests(path) == [(16, "sending")]
    ledger.close()  # its teacher raised before recording: sent, for all we know
    assert requests(path) == [(16, "lost")] and store.images_sent(IDENTITY) == 16


def test_requests_a_killed_job_left_in_flight_count_and_are_marked_lost_by_the_next_writer(tmp_path):
    path = tmp_path / "labels.db"
    with LabelStore(path) as store:
        with store.writer("label"):
            job = store.begin_job("label", IDENTITY, "t" * 64, "p" * 64, "/r", {})
            ledger = Ledger(None)
            ledger.keep_in(store.journal(job, IDENTITY))
            ledger.charge(6)  # ... and the job is killed here
        assert store.images_sent(IDENTITY) == 6
        with store.writer("label"):
            assert requests(path) == [(6, "lost")]
        assert store.stats()["requests"][0]["lost"] == 1


def test_records_kept_before_the_journal_are_written_to_it(tmp_path):
    path = tmp_path / "labels.db"
    ledger = Ledger(None)
    ledger.record(RequestRecord(0.0, 0, 0, 200, 0.01))  # a teacher's metadata read, before the job began
    with LabelStore(path) as store, store.writer("label"):
        job = store.begin_job("label", IDENTITY, "t" * 64, "p" * 64, "/r", {})
        ledger.keep_in(store.journal(job, IDENTITY))
    assert requests(path) == [(0, "200")] and ledger.drain() == []
