"""Pure review core: ids, cursors, claim rules, metadata shaping, audit keys, stats, login limiter."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest

from partcheck.errors import InvalidInput, InvalidKey
from services.review import core
from services.review.core import Claim, Listed

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("key", ["unclear/a.jpg", "unclear/line 3/cam-1/ü ñ.jpg", "unclear/x/y/z.png"])
def test_id_round_trip(key: str) -> None:
    item_id = core.encode_id(key)
    assert "/" not in item_id
    assert "=" not in item_id
    assert "+" not in item_id
    assert core.decode_id(item_id) == key


@pytest.mark.parametrize("rel", ["../etc/passwd", "a/../../b", "/abs", "a//b", "./a", "a\x00b", "a/.."])
def test_decode_refuses_unsafe_keys(rel: str) -> None:
    import base64

    with pytest.raises(InvalidKey):
        core.decode_id(base64.urlsafe_b64encode(rel.encode()).decode().rstrip("="))


@pytest.mark.parametrize("bad", ["", "!!!", "YQ=", "YR", "x" * 2000, "%2e%2e"])
def test_decode_refuses_garbage_and_non_canonical(bad: str) -> None:
    with pytest.raises(InvalidKey):
        core.decode_id(bad)


def test_encode_refuses_keys_outside_unclear() -> None:
    with pytest.raises(InvalidKey):
        core.encode_id("human_decided/ok_a.jpg")


def _queue(n: int) -> list[Listed]:
    return core.order_queue(
        Listed(T0 + timedelta(seconds=i // 2), f"unclear/{(n - i):04d}.jpg") for i in range(n)
    )


def test_order_oldest_first_key_breaks_ties() -> None:
    q = _queue(4)
    assert [e.key for e in q] == [
        "unclear/0003.jpg",
        "unclear/0004.jpg",
        "unclear/0001.jpg",
        "unclear/0002.jpg",
    ]


def test_pages_cover_everything_once() -> None:
    q = _queue(25)
    seen, cursor, rounds = [], None, 0
    while True:
        page, cursor = core.page_after(q, cursor, 10)
        seen += page
        rounds += 1
        if cursor is None:
            break
    assert seen == q
    # The last, short page says it is the last: no extra round trip for an empty page.
    assert rounds == 3
    # The queue's length is known, so a last page that is exactly full ends the walk too.
    page, cursor = core.page_after(_queue(10), None, 10)
    assert (len(page), cursor) == (10, None)


def test_cursor_survives_removal_of_its_item() -> None:
    q = _queue(10)
    page, cursor = core.page_after(q, None, 3)
    remaining = [e for e in q if e != page[-1]]
    nxt, _ = core.page_after(remaining, cursor, 3)
    assert nxt == q[3:6]


def test_bad_cursor() -> None:
    # JSON that decodes but is no [time, key] pair, e.g. [5, "k"], must be refused like garbage.
    odd = [[[1], "k"], [5, "k"], [None, "k"], [{"a": 1}, "k"], ["2026-01-01T00:00:00Z"], "x", {"a": 1}]
    encoded = [base64.urlsafe_b64encode(json.dumps(v).encode()).decode().rstrip("=") for v in odd]
    for bad in ["nope", "W10", "WyJ4IiwgMV0", *encoded]:
        with pytest.raises(InvalidInput):
            core.page_after(_queue(3), bad, 2)


def test_claim_rules() -> None:
    mine = Claim("alice", T0 + timedelta(minutes=5))
    assert core.claim_outcome(None, "bob", T0) == "grant"
    assert core.claim_outcome(mine, "alice", T0) == "extend"
    assert core.claim_outcome(mine, "bob", T0) == "conflict"
    assert core.claim_outcome(mine, "bob", T0 + timedelta(minutes=5)) == "grant"
    assert core.claim_conflict(mine) == "claimed by alice until 10:05:00 UTC"
    assert Claim.from_json(mine.to_json()) == mine
    assert Claim.from_json(b"{not json") is None
    assert Claim.from_dict({"inspector": 3, "expires_at": "2026"}) is None


def test_decision_keys() -> None:
    k = core.decision_keys("unclear/line-3/img.jpg", "defect")
    assert k.decided_key == "human_decided/line-3/defect_img.jpg"
    assert k.marker_key == "decisions/line-3/img.jpg.json"
    assert k.claim_key == "claims/line-3/img.jpg.json"
    assert core.decision_keys("unclear/line-3/img.jpg", "ok").marker_key == k.marker_key


def test_marked_key_inverts_the_marker_key() -> None:
    for key in ["unclear/a.jpg", "unclear/line-3/cam 1/img.json.jpg"]:
        assert core.marked_key(core.decision_keys(key, "ok").marker_key) == key
    assert core.marked_key("decisions/a.jpg") is None
    assert core.marked_key("claims/a.jpg.json") is None


def test_a_long_note_is_cut_on_a_whole_character() -> None:
    note = "a" + "é" * 200  # quoted: "a" then "%C3%A9" 200 times; 600 characters end inside an escape
    meta = core.decided_metadata({"model-label": "unclear"}, "alice", T0, "ok", note)
    assert len(meta["note"]) <= 600
    kept = unquote(meta["note"], errors="strict")
    assert kept == note[: len(kept)]
    assert len(kept) == 100  # "a" and 99 whole characters; before, "%C3%A" was left at the end


def test_decided_metadata_stays_under_s3_limit() -> None:
    original = {"model-label": "unclear", "confidence": "0.5", "model-version": "1", "source-key": "k" * 200}
    meta = core.decided_metadata(original, "alice", T0, "ok", "é" * 500)
    assert sum(len(k) + len(v) for k, v in meta.items()) <= 1900
    # The router caps each value at 256 characters: with every long one at its cap, only the note
    # gives way, so the loop that shortens it is what keeps the total within S3's 2 KB.
    long = {name: name[0] * 256 for name in ("source-key", "line", "camera", "model-name", "model-version")}
    full = core.decided_metadata({**original, **long}, "alice", T0, "ok", "é" * 500)
    assert sum(len(k) + len(v) for k, v in full.items()) <= 1900
    assert 0 < len(full["note"]) < len(meta["note"])
    assert all(full[name] == value for name, value in long.items())
    assert meta["inspector"] == "alice"
    assert meta["label"] == "ok"
    assert meta["decided-at"] == "2026-11-25T10:00:00Z"
    assert all(v.isascii() for v in meta.values())


def test_validate_note() -> None:
    assert core.validate_note("  ok  ") == "ok"
    assert core.validate_note("   ") is None
    assert core.validate_note("two\nlines") == "two\nlines"
    assert core.validate_note("x" * 500) == "x" * 500
    with pytest.raises(InvalidInput):
        core.validate_note("x" * 501)
    with pytest.raises(InvalidInput):
        core.validate_note("bell\x07")


def test_item_fields_tolerate_bad_metadata() -> None:
    item = core.item_fields(
        "unclear/a.jpg", {"confidence": "nan", "p-defect": "7", "model-label": "weird"}, T0
    )
    assert item["confidence"] == 0.0
    assert item["p_defect"] == 1.0
    assert item["model_label"] == "unclear"
    assert item["uploaded_at"] == "2026-11-25T10:00:00Z"
    assert item["line"] is None


def test_audit_key_sorts_and_parses() -> None:
    a = core.audit_key(T0, "u1")
    b = core.audit_key(T0 + timedelta(microseconds=1), "u0")
    assert a.startswith("audit/2026/11/25/20261125T100000.000000Z-")
    assert a < b
    assert core.audit_time(a) == T0
    assert core.audit_time("audit/2026/11/25/junk.json") is None


def test_undo_refusal() -> None:
    last = {"action": "decision", "decided_at": core.iso(T0)}
    assert core.undo_refusal(last, T0 + timedelta(seconds=29), 30) is None
    assert core.undo_refusal(last, T0 + timedelta(seconds=30), 30) is None  # the window includes its end
    assert "window" in (core.undo_refusal(last, T0 + timedelta(seconds=30, microseconds=1), 30) or "")
    assert "window" in (core.undo_refusal(last, T0 + timedelta(seconds=31), 30) or "")
    assert core.undo_refusal(None, T0, 30) == "nothing to undo"
    assert core.undo_refusal({**last, "action": "undo"}, T0, 30) == "nothing to undo"


def test_undo_intent_round_trips_and_a_malformed_one_names_no_undo() -> None:
    key = core.audit_key(T0, "ab" * 16)
    intent = core.undo_intent("bob", T0, key)
    assert core.parse_undo_intent(intent) == ("bob", T0, key)
    assert core.parse_undo_intent(None) is None
    assert core.parse_undo_intent("bob") is None
    for broken in (
        {**intent, "by": ""},
        {**intent, "at": "yesterday"},
        {**intent, "at": 5},
        {**intent, "audit_key": "decisions/x.json"},
        {**intent, "audit_key": "audit/2026/11/25/not-a-stamp.json"},
        {k: v for k, v in intent.items() if k != "audit_key"},
    ):
        assert core.parse_undo_intent(broken) is None, broken


def test_hourly_throughput_has_24_hours() -> None:
    now = T0 + timedelta(minutes=30)
    hours = core.hourly_throughput(
        [T0, T0 + timedelta(minutes=5), T0 - timedelta(hours=2), T0 - timedelta(hours=30)], now
    )
    assert len(hours) == 24
    assert hours[-1] == {"hour": "2026-11-25T10:00:00Z", "decisions": 2}
    assert hours[-3]["decisions"] == 1
    assert sum(h["decisions"] for h in hours) == 3


def test_rates() -> None:
    counts = {"okay": 6, "defect": 1, "unclear": 1, "human_decided": 2, "rejected": 0}
    assert core.rates(counts, human_defect=1) == (0.2, 0.3)
    # Rejected images count in the denominator only.
    assert core.rates({**counts, "rejected": 10}, human_defect=1) == (0.1, 0.15)
    assert core.rates({}, 0) == (0.0, 0.0)
    assert core.human_label("human_decided/x/defect_a.jpg") == "defect"
    assert core.human_label("human_decided/x/ok_a.jpg") == "ok"


def _failed(lim: core.LoginLimiter, keys: list[str], now: float) -> None:
    """One wrong password: admitted, checked, failed."""
    assert lim.begin(keys, now, block_s=0) is None
    lim.end(keys, now, failed=True)


def test_login_limiter_window() -> None:
    lim = core.LoginLimiter(max_failures=2, window_s=60)
    keys = ["user:a", "ip:1"]
    assert lim.retry_after(keys, 0) is None
    _failed(lim, keys, 0)
    _failed(lim, keys, 10)
    assert lim.retry_after(keys, 20) == 40
    assert lim.retry_after(["ip:1"], 20) == 40
    assert lim.retry_after(["user:b"], 20) is None
    assert lim.retry_after(keys, 60.5) is None  # the first failure left the window
    lim.succeed("user:a")
    _failed(lim, ["ip:1"], 61)
    assert lim.retry_after(["ip:1"], 62) is not None


def test_login_limiter_counts_attempts_in_flight() -> None:
    lim = core.LoginLimiter(max_failures=3, window_s=60)
    keys = ["user:a", "ip:1"]
    # Three checks may run at once; a fourth would pass the limit if all three failed: it must wait.
    assert [lim.begin(keys, 1.0, block_s=0) for _ in range(3)] == [None] * 3
    assert lim.begin(keys, 1.0, block_s=0) == 1
    assert lim.begin(["user:b", "ip:2"], 1.0, block_s=0) is None  # other keys are not held up
    lim.end(keys, 1.0, failed=False)  # a right password, or one the server could not check
    assert lim.begin(keys, 2.0, block_s=0) is None
    for _ in range(3):
        lim.end(keys, 2.0, failed=True)
    # Three failures: refused for the rest of the window, however long it would wait.
    assert lim.begin(keys, 3.0, block_s=0) == 59
    assert lim.retry_after(keys, 3.0) == 59


def test_login_limiter_lets_an_attempt_wait_for_those_in_flight() -> None:
    lim = core.LoginLimiter(max_failures=2, window_s=60)
    keys = ["user:a", "ip:1"]
    assert lim.begin(keys, 1.0) is None
    assert lim.begin(keys, 1.0) is None
    ended = threading.Timer(0.2, lambda: lim.end(keys, 1.0, failed=False))
    ended.start()
    started = time.monotonic()
    assert lim.begin(keys, 1.0, block_s=5) is None  # admitted once one of the two ended
    assert 0.1 < time.monotonic() - started < 4
    ended.join()


def test_login_limiter_memory_is_bounded() -> None:
    lim = core.LoginLimiter(max_failures=5, window_s=60)
    for i in range(20_000):
        _failed(lim, [f"user:spray-{i}"], float(i % 10))
    _failed(lim, ["user:late"], 1000.0)
    assert len(lim._failures) <= 10_002


def test_overlong_ids_are_refused_before_decoding() -> None:
    # Valid base64 of a long key: refused on its length, without decoding megabytes of input.
    with pytest.raises(InvalidKey, match="too long"):
        core.decode_id("QUFB" * 400)


def test_history_filters() -> None:
    record = {"inspector": "bob", "label": "ok", "at": "2026-11-25T10:00:00Z"}
    assert core.history_matches(record, None, None, None)
    assert core.history_matches(record, "bob", "ok", T0)
    assert not core.history_matches(record, "alice", None, None)
    assert not core.history_matches(record, None, "defect", None)
    assert not core.history_matches(record, None, None, T0 + timedelta(seconds=1))
    # A record without a readable time cannot be shown as newer than `since`.
    assert not core.history_matches({**record, "at": None}, None, None, T0)
    assert core.history_matches({**record, "at": None}, None, None, None)
