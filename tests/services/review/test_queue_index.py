"""QueueIndex: background re-listing with this process's own changes laid over it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from partcheck.storage import ObjectInfo
from services.review.core import Listed
from services.review.store import QueueIndex

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


class FakeStore:
    """Lists a mutable set of keys; can hold a listing half-way to simulate a slow one."""

    def __init__(self, keys: list[str]) -> None:
        self.objects = {k: T0 + timedelta(seconds=i) for i, k in enumerate(keys)}
        self.gate: threading.Event | None = None
        self.listing = threading.Event()
        self.done = threading.Event()

    def list(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        snapshot = dict(self.objects)
        self.listing.set()
        if self.gate is not None:
            self.gate.wait(5)
        for key, t in sorted(snapshot.items()):
            yield ObjectInfo(bucket, key, 1, "e", t)
        self.done.set()


def _index(store: FakeStore, max_age_s: float) -> tuple[QueueIndex, ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2)
    fake: Any = store
    return QueueIndex(fake, "b", max_age_s, pool), pool


def test_own_changes_show_at_once_and_survive_a_listing_under_way() -> None:
    store = FakeStore(["unclear/a", "unclear/b", "unclear/c"])
    index, pool = _index(store, max_age_s=0.0)
    assert [e.key for e in index.entries()] == ["unclear/a", "unclear/b", "unclear/c"]
    # A slow re-listing starts, sees "a" still there, and the decision on "a" lands meanwhile.
    store.gate = threading.Event()
    store.listing.clear()
    time.sleep(0.05)  # older than ten times the (instant) first listing took
    index.entries()  # stale: triggers the background listing
    assert store.listing.wait(5)
    del store.objects["unclear/a"]
    index.removed("unclear/a")
    assert [e.key for e in index.entries()] == ["unclear/b", "unclear/c"]
    store.done.clear()
    store.gate.set()
    # Waiting for the pool, not for a while: the listing has then finished and been installed.
    pool.shutdown(wait=True)
    assert store.done.is_set()
    # The listing that started before the delete still contained "a": the overlay keeps it out.
    assert [e.key for e in index.entries()] == ["unclear/b", "unclear/c"]


def test_restored_item_reappears_in_order() -> None:
    store = FakeStore(["unclear/a", "unclear/b"])
    index, pool = _index(store, max_age_s=60.0)
    index.entries()
    index.removed("unclear/a")
    assert [e.key for e in index.entries()] == ["unclear/b"]
    index.restored(Listed(T0 - timedelta(seconds=5), "unclear/a", "e2"))
    assert [e.key for e in index.entries()] == ["unclear/a", "unclear/b"]
    pool.shutdown(wait=True)
