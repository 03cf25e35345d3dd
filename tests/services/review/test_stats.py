"""Dashboard stats: whole-prefix totals listed at their own pace, the unclear count as the queue counts it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.services.review.conftest import BUCKET, login
from tests.services.review.test_recovery import eventually, interrupted

pytestmark = pytest.mark.integration

App = Callable[..., TestClient]


def test_whole_prefix_totals_are_listed_once_per_stats_totals_seconds(
    app_factory: App, put_unclear: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # okay/ and the other sorted prefixes hold every image ever sorted (~365 LIST pages after a year at
    # 1,000 a day), and the dashboard polls /api/stats: they must not be re-listed at the polling pace.
    c = app_factory(stats_totals_seconds=3600.0)  # stats_cache_seconds is 0 here: fresh parts every time
    login(c)
    for k in ["okay/1.jpg", "okay/2.jpg", "defect/1.jpg"]:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"x")
    put_unclear("t/1.jpg")
    store = c.app.state.review.store  # type: ignore[attr-defined]
    real_list = store.store.list
    okay_lists: list[str] = []

    def listing(bucket: str, prefix: str = "", start_after: str | None = None) -> Any:
        if prefix == "okay/":
            okay_lists.append(prefix)
        return real_list(bucket, prefix, start_after)

    monkeypatch.setattr(store.store, "list", listing)
    first = c.get("/api/stats").json()
    assert first["counts"]["unclear"] == 1
    assert first["counts"]["okay"] == 2
    put_unclear("t/2.jpg")
    s3.put_object(Bucket=BUCKET, Key="okay/3.jpg", Body=b"x")
    seen: list[dict[str, Any]] = []

    def unclear_grew() -> bool:
        seen.append(c.get("/api/stats").json())
        return bool(seen[-1]["counts"]["unclear"] == 2)

    eventually(unclear_grew)
    seen += [c.get("/api/stats").json() for _ in range(5)]
    assert len(okay_lists) == 1, f"okay/ listed {len(okay_lists)} times over {len(seen) + 1} stats requests"
    assert {s["counts"]["okay"] for s in seen} == {2}  # okay/3.jpg waits for the next totals listing
    assert {s["totals_computed_at"] for s in seen} == {first["totals_computed_at"]}
    # The rates take the fresh unclear count: (2 unclear + 0 decided) / (2 + 1 + 2) sorted images.
    assert seen[-1]["unclear_rate"] == pytest.approx(2 / 5)


def test_a_decided_image_not_yet_removed_is_not_counted_as_unclear(
    alice: TestClient, put_unclear: Any, s3: Any
) -> None:
    put_unclear("s/0.jpg")
    put_unclear("s/1.jpg")
    s3.put_object(Bucket=BUCKET, Key="okay/1.jpg", Body=b"x")
    # Decided on another instance a moment ago (marker and decided copy written), its removal from
    # unclear/ still on its way: nobody can decide it, so it is not waiting.
    interrupted(s3, "s/9.jpg", age=timedelta(seconds=1))
    stats = alice.get("/api/stats").json()
    assert stats["counts"]["unclear"] == 2
    total = alice.get("/api/queue").json()["total"]
    assert stats["counts"]["unclear"] == total
    # (2 waiting + 1 decided) / (2 + 1 + 1 okay)
    assert stats["unclear_rate"] == pytest.approx(3 / 4)
