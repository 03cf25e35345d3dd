"""Storage layout: bucket prefixes and key rules, defined once for every service."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from enum import StrEnum
from typing import Literal

from partcheck.errors import InvalidKey

MAX_KEY_BYTES = 1024
# S3 takes at most 2 KB of user metadata (the bytes of every name and value); the rest is headroom.
METADATA_BUDGET = 1900


class Route(StrEnum):
    """Top-level prefixes of the prediction bucket."""

    OKAY = "okay"
    DEFECT = "defect"
    UNCLEAR = "unclear"
    HUMAN_DECIDED = "human_decided"
    REJECTED = "rejected"

    @property
    def prefix(self) -> str:
        """The prefix with its trailing slash, as used in S3 listings."""
        return f"{self.value}/"


AUDIT_PREFIX = "audit/"
HumanLabel = Literal["ok", "defect"]


def fit_metadata(meta: dict[str, str], shortenable: Iterable[str]) -> dict[str, str]:
    """`meta` (percent-encoded ASCII values) within METADATA_BUDGET: the longest shortenable value is halved.

    Past the budget S3 refuses the PUT or copy for good; the values left out of `shortenable` identify
    the object and are never touched (if they alone are over, the result stays over). A halved value
    ends on a whole escape and a whole UTF-8 character (`cut_escaped`), so it still decodes.
    """
    names = tuple(shortenable)
    while sum(len(k) + len(v) for k, v in meta.items()) > METADATA_BUDGET:
        longest = max((n for n in names if meta.get(n)), key=lambda n: len(meta[n]), default="")
        if not longest:
            break
        meta[longest] = cut_escaped(meta[longest], len(meta[longest]) // 2)
    return meta


_HEX = frozenset("0123456789abcdefABCDEF")


def _escaped_byte(value: str, i: int) -> int | None:
    """The byte a `%XX` escape at `i` stands for, or None when there is no escape there."""
    if value.startswith("%", i) and i + 3 <= len(value) and value[i + 1] in _HEX and value[i + 2] in _HEX:
        return int(value[i + 1 : i + 3], 16)
    return None


def _char_end(value: str, i: int) -> int:
    """Where the character starting at `i` ends: one plain character, or every escape of one UTF-8 one."""
    lead = _escaped_byte(value, i)
    if lead is None:
        return i + 1
    # The lead byte says how many continuation bytes (0b10xxxxxx) the character has; a stray byte is alone.
    more = 1 if 0xC0 <= lead < 0xE0 else 2 if 0xE0 <= lead < 0xF0 else 3 if 0xF0 <= lead < 0xF8 else 0
    end = i + 3
    for _ in range(more):
        byte = _escaped_byte(value, end)
        if byte is None or byte & 0xC0 != 0x80:
            break
        end += 3
    return end


def cut_escaped(value: str, limit: int) -> str:
    """A percent-encoded `value` cut to at most `limit` characters, never inside an escape or a character."""
    if len(value) <= limit:
        return value
    # A cut inside `%C3%A4` would leave `%C` (unquote keeps it as text) or `%C3` (a broken UTF-8 byte).
    end = 0
    while end < len(value):
        nxt = _char_end(value, end)
        if nxt > limit:
            break
        end = nxt
    return value[:end]


def validate_relative_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise InvalidKey."""
    if not key or key.startswith("/"):
        raise InvalidKey(f"empty or absolute key: {key!r}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey("key longer than 1024 bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidKey(f"control character in key: {key!r}")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKey(f"key has an empty, '.' or '..' segment: {key!r}")
    return key


def routed_key(route: Route, inbound_key: str) -> str:
    """Destination key of an inbound object under a route; the relative key is kept so names never collide."""
    return f"{route.prefix}{validate_relative_key(inbound_key)}"


def relative_key(route: Route, key: str) -> str:
    """Strip a route prefix, refusing keys that are not under it."""
    if not key.startswith(route.prefix):
        raise InvalidKey(f"key {key!r} is not under {route.prefix}")
    return validate_relative_key(key[len(route.prefix) :])


def human_decided_key(unclear_key: str, label: HumanLabel) -> str:
    """`human_decided/<dir>/<label>_<name>` for an `unclear/` image: the original's naming, path kept."""
    if label not in ("ok", "defect"):
        raise InvalidKey(f"label must be ok or defect, not {label!r}")
    rel = relative_key(Route.UNCLEAR, unclear_key)
    directory, name = posixpath.split(rel)
    decided = f"{label}_{name}"
    return f"{Route.HUMAN_DECIDED.prefix}{posixpath.join(directory, decided) if directory else decided}"


DECISIONS_PREFIX = "decisions/"


def decision_marker_key(unclear_key: str) -> str:
    """Marker written if-absent on a decision; the router never re-creates an image that has one."""
    return f"{DECISIONS_PREFIX}{relative_key(Route.UNCLEAR, unclear_key)}.json"
