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
    """`meta` (ASCII values) within METADATA_BUDGET: the longest shortenable value is halved until it fits.

    Past the budget S3 refuses the PUT or copy for good; the values left out of `shortenable` identify
    the object and are never touched (if they alone are over, the result stays over).
    """
    names = tuple(shortenable)
    while sum(len(k) + len(v) for k, v in meta.items()) > METADATA_BUDGET:
        longest = max((n for n in names if meta.get(n)), key=lambda n: len(meta[n]), default="")
        if not longest:
            break
        meta[longest] = meta[longest][: len(meta[longest]) // 2]
    return meta


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
