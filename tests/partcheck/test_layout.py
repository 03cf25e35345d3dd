from urllib.parse import quote, unquote

import pytest

from partcheck.errors import InvalidKey
from partcheck.layout import Route, decision_marker_key, human_decided_key, relative_key, routed_key

pytestmark = pytest.mark.unit


def test_routed_key_keeps_the_relative_path():
    assert routed_key(Route.DEFECT, "line-3/cam-1/2026-11-25/img_0001.jpg") == (
        "defect/line-3/cam-1/2026-11-25/img_0001.jpg"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/abs.jpg",
        "a/../b.jpg",
        "a//b.jpg",
        "./a.jpg",
        "a\x00.jpg",
        "a\x1f.jpg",
        "a\x7f.jpg",
        "x" * 1100,
        "a" * 1025,
        "ä" * 600,  # 600 characters, 1200 bytes: the limit is S3's, in UTF-8 bytes
    ],
)
def test_unsafe_keys_are_refused(bad):
    with pytest.raises(InvalidKey):
        routed_key(Route.OKAY, bad)


@pytest.mark.parametrize("key", ["a" * 1024, "ä" * 512, "a b~.jpg"])
def test_keys_up_to_1024_bytes_and_without_control_characters_are_fine(key):
    # 1024 bytes is S3's limit; space (0x20) and ~ (0x7E) are the neighbours of the refused ranges.
    assert routed_key(Route.OKAY, key) == f"okay/{key}"


@pytest.mark.parametrize("key", ["/abs.jpg", "/a/b.jpg"])
def test_absolute_keys_are_refused_as_absolute(key):
    # "/abs.jpg" also has an empty first segment; the message shows which rule refused it.
    with pytest.raises(InvalidKey, match="empty or absolute"):
        routed_key(Route.OKAY, key)


def test_unicode_and_spaces_are_fine():
    assert routed_key(Route.UNCLEAR, "line 3/Käfer #1.jpg") == "unclear/line 3/Käfer #1.jpg"


def test_human_decided_key_uses_the_original_naming_and_keeps_the_path():
    assert human_decided_key("unclear/line-3/cam-1/img.jpg", "ok") == "human_decided/line-3/cam-1/ok_img.jpg"
    assert human_decided_key("unclear/img.jpg", "defect") == "human_decided/defect_img.jpg"


def test_human_decided_key_refuses_keys_outside_unclear_and_bad_labels():
    with pytest.raises(InvalidKey):
        human_decided_key("okay/img.jpg", "ok")
    with pytest.raises(InvalidKey):
        human_decided_key("unclear/../okay/img.jpg", "ok")
    with pytest.raises(InvalidKey):
        human_decided_key("unclear/img.jpg", "maybe")  # type: ignore[arg-type]


def test_relative_key_and_marker():
    assert relative_key(Route.UNCLEAR, "unclear/a/b.jpg") == "a/b.jpg"
    assert decision_marker_key("unclear/a/b.jpg") == "decisions/a/b.jpg.json"


@pytest.mark.parametrize("key", ["unclearX/a.jpg", "unclear", "unclear.jpg", "okay/unclear/a.jpg"])
def test_a_key_is_under_a_route_only_after_its_slash(key):
    with pytest.raises(InvalidKey, match="not under unclear/"):
        relative_key(Route.UNCLEAR, key)
    with pytest.raises(InvalidKey):
        human_decided_key(key, "ok")


def test_fit_metadata_shortens_only_what_may_give_way() -> None:
    from partcheck.layout import METADATA_BUDGET, fit_metadata

    meta = {"sha256": "ab" * 32, "reason": "r" * 900, "line": "l" * 900, "camera": "c" * 100}
    out = fit_metadata(dict(meta), ("reason", "line", "camera"))
    assert sum(len(k) + len(v) for k, v in out.items()) <= METADATA_BUDGET
    assert out["sha256"] == meta["sha256"]
    assert out["camera"] == meta["camera"]  # the longest go first; this one was never the longest
    # Nothing shortenable left: the identifying values are never cut, even over the budget.
    assert fit_metadata({"sha256": "x" * 3000}, ("reason",)) == {"sha256": "x" * 3000}


def _decodes_to_a_prefix(cut: str, original: str) -> None:
    """`cut` decodes (strict UTF-8, no half escape left as text) to a start of `original`."""
    assert "%" not in cut[-2:], cut[-6:]  # a trailing `%` or `%X` is half an escape
    decoded = unquote(cut, errors="strict")
    assert original.startswith(decoded), (cut[-12:], decoded[-4:])


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("x" * 255 + "#tail", "x" * 255),  # the 256th character is the `%` of `%23`
        ("x" * 254 + "#tail", "x" * 254),  # ... its first hex digit
        ("x" * 253 + "ä", "x" * 253),  # a whole escape `%C3`, but half of `%C3%A4`
        ("x" * 250 + "€", "x" * 250),  # two of the three escapes of `%E2%82%AC`
        ("x" * 247 + "€", "x" * 247 + "€"),  # ends exactly on the character
        ("x" * 245 + "😀", "x" * 245),  # a four-byte character cut inside its last escape
    ],
)
def test_a_cut_ends_on_a_whole_escape_and_a_whole_character(text: str, kept: str) -> None:
    from partcheck.layout import cut_escaped

    cut = cut_escaped(quote(text, safe=""), 256)
    assert len(cut) <= 256
    _decodes_to_a_prefix(cut, text)
    assert unquote(cut) == kept  # as much as fits, not less


def test_a_plain_value_is_cut_at_the_limit() -> None:
    from partcheck.layout import cut_escaped

    assert cut_escaped("a" * 300, 256) == "a" * 256
    assert cut_escaped("abc", 256) == "abc"


def test_fit_metadata_halves_a_value_on_a_whole_escape_and_character() -> None:
    from partcheck.layout import METADATA_BUDGET, fit_metadata

    # 2701 characters: half of them ends inside `%E2%82%AC`, after `%E2%82%A`.
    note = "x" + "€" * 300
    meta = {"inspector": "ann", "note": quote(note, safe="")}
    out = fit_metadata(dict(meta), ("note",))
    assert sum(len(k) + len(v) for k, v in out.items()) <= METADATA_BUDGET
    assert out["note"]
    _decodes_to_a_prefix(out["note"], note)
