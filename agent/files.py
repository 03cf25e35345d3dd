"""Pure rules about files: which names to ignore, what counts as an image, and the object key and metadata."""

from __future__ import annotations

import io
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from urllib.parse import quote

from partcheck.errors import InvalidKey
from partcheck.layout import validate_relative_key

# Names camera software and copy tools use while a file is still being written.
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", ".filepart", "~")
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
_SEGMENT_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_OFFSET_TIME_ORIGINAL = 36881
_DATETIME = 306
_OFFSET_TIME = 36880  # DateTime's offset (EXIF 2.31), in the Exif IFD like OffsetTimeOriginal


def is_temp_name(name: str) -> bool:
    """True for dotfiles, Office-style `~$` locks and temporary suffixes: never finished images."""
    lower = name.lower()
    return name.startswith((".", "~$")) or lower.endswith(TEMP_SUFFIXES)


@dataclass(frozen=True)
class ImageFacts:
    """What the bytes say about an image."""

    format: str
    content_type: str
    capture_time: datetime | None


def sniff_image(data: bytes, formats: tuple[str, ...]) -> ImageFacts | None:
    """Identify an image by its content (header only, no full decode); None if it is not an accepted image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=list(formats)) as img:
            fmt = str(img.format or "")
            captured = _exif_time(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    # Image.open accepts some formats by extension-free heuristics; keep only those asked for.
    if fmt not in formats:
        return None
    return ImageFacts(fmt, CONTENT_TYPES.get(fmt, "application/octet-stream"), captured)


def _exif_time(img: object) -> datetime | None:
    """DateTimeOriginal (or DateTime) from EXIF as an aware datetime; naive values are the PC's local time."""
    try:
        exif = img.getexif()  # type: ignore[attr-defined]
        sub = exif.get_ifd(_EXIF_IFD)
        raw, offset = sub.get(_DATETIME_ORIGINAL), sub.get(_OFFSET_TIME_ORIGINAL)
        if not raw:  # DateTime with its own offset tag, never the original's
            raw, offset = exif.get(_DATETIME), sub.get(_OFFSET_TIME)
        if not raw:
            return None
        parsed = datetime.strptime(str(raw).strip("\x00 ").strip(), "%Y:%m:%d %H:%M:%S")
        if offset:
            return datetime.strptime(
                f"{parsed:%Y-%m-%d %H:%M:%S}{str(offset).strip()}", "%Y-%m-%d %H:%M:%S%z"
            )
        return parsed.astimezone()
    except (AttributeError, KeyError, TypeError, ValueError, OSError):
        return None


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z suffix."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sanitize_segment(value: str, *, allow_slash: bool = False) -> str:
    """A key segment of letters, digits, dot, dash and underscore; slashes split segments only if allowed."""
    if not allow_slash:
        value = value.replace("/", "-")
    parts = (_SEGMENT_BAD.sub("-", p).strip("-.") for p in value.split("/"))
    return "/".join(p for p in parts if p)


def is_utf8(text: str) -> bool:
    """False for a name with bytes that are not UTF-8, which os.fsdecode turned into lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def raw_name(name: str) -> bytes:
    """The bytes a file name stands for (a name that was not valid UTF-8 comes back surrogate-escaped)."""
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate the file system encoding cannot carry
        return name.encode("utf-8", "surrogatepass")


def as_text(name: str) -> str:
    """The name as valid UTF-8 text: each run of bytes that is not UTF-8 (e.g. Latin-1 from SMB) becomes _."""
    return name if is_utf8(name) else raw_name(name).decode("utf-8", "replace").replace("\ufffd", "_")


def printable(text: str) -> str:
    """Text safe to print whatever the terminal: bytes that are not UTF-8 shown as \\xNN escapes."""
    return text if is_utf8(text) else raw_name(text).decode("utf-8", "backslashreplace")


def sanitize_name(name: str) -> str:
    """The file name as a key segment: NFC unicode, spaces kept, control characters and slashes replaced."""
    name = unicodedata.normalize("NFC", as_text(name))
    cleaned = "".join("_" if (ord(c) < 0x20 or ord(c) == 0x7F or c in "/\\") else c for c in name).strip()
    return cleaned if cleaned not in ("", ".", "..") else "_"


def suffixed_name(name: str, sha256: str, length: int = 8) -> str:
    """`stem-<hash>.ext`: the later of two same-day, same-name files with different content."""
    path = PurePosixPath(name)
    return f"{path.stem}-{sha256[:length]}{path.suffix}"


def render_key(
    template: str,
    *,
    prefix: str,
    line: str,
    camera: str,
    captured: datetime,
    name: str,
    sha256: str,
    subdir: str = "",
) -> str:
    """The object key for one file; empty segments vanish, so an empty prefix leaves no leading slash."""
    safe_name = sanitize_name(name)
    path = PurePosixPath(safe_name)
    fields = {
        "prefix": sanitize_segment(prefix, allow_slash=True),
        "line": sanitize_segment(line) or "line",
        "camera": sanitize_segment(camera) or "camera",
        "date": captured.astimezone(UTC).strftime("%Y-%m-%d"),
        "name": safe_name,
        "stem": path.stem,
        "suffix": path.suffix,
        "sha8": sha256[:8],
        "subdir": "/".join(sanitize_name(p) for p in subdir.split("/") if p),
    }
    try:
        rendered = template.format(**fields)
    except KeyError as exc:
        raise InvalidKey(f"bad key template {template!r}: unknown field {exc}") from exc
    except (IndexError, ValueError, AttributeError, TypeError) as exc:
        raise InvalidKey(f"bad key template {template!r}: {exc}") from exc
    key = "/".join(seg for seg in rendered.split("/") if seg)
    return validate_relative_key(key)


def source_name_meta(name: str) -> str:
    """The original file name as an S3 metadata value: as is if printable ASCII, else url-quoted."""
    if name.isascii() and name.isprintable():
        return name
    # A name that is not valid UTF-8 is quoted as its bytes, so it stays exact: b"caf\xe9.jpg" is caf%E9.jpg.
    return quote(name if is_utf8(name) else raw_name(name), safe="")


def object_metadata(*, line: str, camera: str, captured: datetime, sha256: str, name: str) -> dict[str, str]:
    """S3 user metadata the predict service and people read back."""
    return {
        "line": sanitize_segment(line) or "line",
        "camera": sanitize_segment(camera) or "camera",
        "capture-time": iso_utc(captured),
        "sha256": sha256,
        "source-name": source_name_meta(name),
    }
