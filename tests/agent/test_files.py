"""Unit tests of the pure file rules: temp names, image sniffing, keys and metadata."""

from __future__ import annotations

import io
import os
import time
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from agent.files import (
    is_temp_name,
    iso_utc,
    object_metadata,
    render_key,
    sanitize_segment,
    sniff_image,
    source_name_meta,
    suffixed_name,
)
from agent.settings import DEFAULT_FORMATS, DEFAULT_KEY_TEMPLATE
from partcheck.errors import InvalidKey
from tests.agent.conftest import jpeg_bytes

pytestmark = pytest.mark.unit

WHEN = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "temp"),
    [("img.jpg", False), ("img.jpg.part", True), ("img.TMP", True), (".hidden.jpg", True), ("img.jpg~", True),
     ("~$lock.jpg", True), ("img.jpg.crdownload", True), ("photo 1.jpeg", False)],
)  # fmt: skip
def test_temp_names(name: str, temp: bool) -> None:
    assert is_temp_name(name) is temp


def test_sniff_accepts_jpeg_by_content_whatever_the_name(sample_images: dict[str, list[Path]]) -> None:
    facts = sniff_image(sample_images["ok"][0].read_bytes(), DEFAULT_FORMATS)
    assert facts is not None
    assert (facts.format, facts.content_type) == ("JPEG", "image/jpeg")


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"\xff\xd8\xff", b"%PDF-1.7\n"])
def test_sniff_rejects_non_images(data: bytes) -> None:
    assert sniff_image(data, DEFAULT_FORMATS) is None


def test_sniff_rejects_formats_not_asked_for() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "GIF")
    assert sniff_image(buf.getvalue(), DEFAULT_FORMATS) is None
    assert sniff_image(buf.getvalue(), ("GIF",)) is not None


def test_capture_time_from_exif_with_offset() -> None:
    img = Image.new("RGB", (8, 8))
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    sub[36867] = "2026:01:02 03:04:05"
    sub[36881] = "+02:00"
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    facts = sniff_image(buf.getvalue(), DEFAULT_FORMATS)
    assert facts is not None
    assert facts.capture_time == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)


def test_no_exif_means_no_capture_time() -> None:
    facts = sniff_image(jpeg_bytes(1), DEFAULT_FORMATS)
    assert facts is not None
    assert facts.capture_time is None


def test_default_key_and_empty_prefix() -> None:
    key = render_key(DEFAULT_KEY_TEMPLATE, prefix="", line="line 3", camera="cam/1", captured=WHEN,
                     name="img_0001.jpg", sha256="ab" * 32)  # fmt: skip
    assert key == "line-3/cam-1/2026-11-25/img_0001.jpg"
    key = render_key(DEFAULT_KEY_TEMPLATE, prefix="plant-a/hall 2", line="l3", camera="c1", captured=WHEN,
                     name="x.jpg", sha256="ab" * 32)  # fmt: skip
    assert key == "plant-a/hall-2/l3/c1/2026-11-25/x.jpg"


def test_key_date_is_utc() -> None:
    local = datetime(2026, 11, 26, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    key = render_key(DEFAULT_KEY_TEMPLATE, prefix="", line="l", camera="c", captured=local, name="a.jpg",
                     sha256="0" * 64)  # fmt: skip
    assert key == "l/c/2026-11-25/a.jpg"


def test_unicode_and_spaces_kept_control_characters_replaced() -> None:
    key = render_key(DEFAULT_KEY_TEMPLATE, prefix="", line="l", camera="c", captured=WHEN,
                     name="Prüfung 1\tteil\\b.jpg", sha256="0" * 64)  # fmt: skip
    assert key == "l/c/2026-11-25/Prüfung 1_teil_b.jpg"


def test_segments_are_sanitized() -> None:
    assert sanitize_segment("../etc//x y", allow_slash=True) == "etc/x-y"
    assert sanitize_segment("a/b") == "a-b"
    assert sanitize_segment("") == ""


def test_bad_template_is_a_clear_error() -> None:
    with pytest.raises(InvalidKey):
        render_key("{nope}/{name}", prefix="", line="l", camera="c", captured=WHEN, name="a.jpg",
                   sha256="0" * 64)  # fmt: skip


def test_a_name_that_is_not_utf8_gets_a_clean_key_and_its_exact_bytes_in_metadata() -> None:
    # os.fsdecode turns each byte that is not UTF-8 into a lone surrogate, which no S3 key can carry.
    name, subdir = os.fsdecode(b"caf\xe9.jpg"), os.fsdecode(b"d\xfcr")
    key = render_key("{line}/{subdir}/{name}", prefix="", line="l", camera="c", captured=WHEN, name=name,
                     sha256="0" * 64, subdir=subdir)  # fmt: skip
    assert key == "l/d_r/caf_.jpg"
    meta = object_metadata(line="l", camera="c", captured=WHEN, sha256="ab" * 32, name=name)
    assert meta["source-name"] == "caf%E9.jpg"
    assert all(v.isascii() for v in meta.values())


def test_suffixed_name() -> None:
    assert suffixed_name("img 1.jpg", "deadbeef" * 8) == "img 1-deadbeef.jpg"
    assert suffixed_name("noext", "deadbeef" * 8, 4) == "noext-dead"


def test_metadata_is_ascii_and_iso_utc() -> None:
    meta = object_metadata(line="line 3", camera="cam-1", captured=WHEN, sha256="ab" * 32, name="Prüfung.jpg")
    assert meta == {"line": "line-3", "camera": "cam-1", "capture-time": "2026-11-25T23:30:00.000Z",
                    "sha256": "ab" * 32, "source-name": "Pr%C3%BCfung.jpg"}  # fmt: skip
    assert all(v.isascii() for v in meta.values())
    assert source_name_meta("plain name.jpg") == "plain name.jpg"
    assert iso_utc(WHEN) == "2026-11-25T23:30:00.000Z"


@pytest.fixture
def local_tz() -> Iterator[Callable[[str], None]]:
    """Set the process's local time zone (POSIX TZ); the one before is put back after the test."""
    before = os.environ.get("TZ")

    def set_tz(tz: str) -> None:
        os.environ["TZ"] = tz
        time.tzset()

    yield set_tz
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


SHA = "0123456789abcdef" * 4


def _key(template: str = DEFAULT_KEY_TEMPLATE, **over: str) -> str:
    """render_key with plain defaults for every field not given."""
    fields = {"prefix": "", "line": "l", "camera": "c", "name": "a.jpg", "sha256": SHA, "subdir": ""} | over
    return render_key(template, captured=WHEN, **fields)


@pytest.mark.parametrize(
    ("name", "key"),
    [(".", "l/c/2026-11-25/_"), ("..", "l/c/2026-11-25/_"), (" .. ", "l/c/2026-11-25/_"),
     ("", "l/c/2026-11-25/_"), ("   ", "l/c/2026-11-25/_"), ("...", "l/c/2026-11-25/..."),
     (unicodedata.normalize("NFD", "Prüfung é.jpg"), "l/c/2026-11-25/Prüfung é.jpg"),
     (unicodedata.normalize("NFC", "Prüfung é.jpg"), "l/c/2026-11-25/Prüfung é.jpg")],
)  # fmt: skip
def test_names_that_are_no_segment_and_unicode_forms(name: str, key: str) -> None:
    # "." and ".." are no key segment S3 paths allow; NFD (macOS, SMB) and NFC must give one object, not two.
    assert _key(name=name) == key


def test_an_nfd_folder_name_gives_the_nfc_key() -> None:
    nfd, nfc = unicodedata.normalize("NFD", "Müll"), unicodedata.normalize("NFC", "Müll")
    assert nfd != nfc
    template = "{line}/{subdir}/{name}"
    assert _key(template, subdir=f"{nfd}/{nfd}", name=f"{nfd}.jpg") == f"l/{nfc}/{nfc}/{nfc}.jpg"


@pytest.mark.parametrize(
    ("line", "camera", "key"),
    [("///", "c", "line/c/2026-11-25/a.jpg"), ("l", "@@ **", "l/camera/2026-11-25/a.jpg"),
     ("..", "./.", "line/camera/2026-11-25/a.jpg"), ("", "", "line/camera/2026-11-25/a.jpg")],
)  # fmt: skip
def test_a_line_or_camera_of_symbols_only_gets_a_fallback_segment(line: str, camera: str, key: str) -> None:
    assert _key(line=line, camera=camera) == key
    meta = object_metadata(line=line, camera=camera, captured=WHEN, sha256=SHA, name="a.jpg")
    assert (meta["line"], meta["camera"]) == tuple(key.split("/")[:2])


@pytest.mark.parametrize(
    ("template", "subdir", "key"),
    [("{line}/{subdir}/{name}", "", "l/a.jpg"), ("{line}/{subdir}/{name}", "x//y/", "l/x/y/a.jpg"),
     ("{prefix}/{subdir}/{line}/{name}", "", "l/a.jpg"), ("{line}/{subdir}/{subdir}/{name}", "", "l/a.jpg"),
     ("{line}//{camera}/{name}/", "", "l/c/a.jpg")],
)  # fmt: skip
def test_empty_fields_in_the_middle_of_a_template_leave_no_empty_segment(
    template: str, subdir: str, key: str
) -> None:
    assert _key(template, subdir=subdir) == key


@pytest.mark.parametrize(
    ("template", "name", "key"),
    [("{line}/{stem}-{sha8}{suffix}", "img 1.jpg", "l/img 1-01234567.jpg"),
     ("{sha8}/{name}", "a.jpg", "01234567/a.jpg"),
     ("{line}/{date}/{sha8}", "x.png", "l/2026-11-25/01234567")],
)  # fmt: skip
def test_sha8_is_the_first_eight_hex_digits(template: str, name: str, key: str) -> None:
    assert _key(template, name=name) == key


@pytest.mark.parametrize(
    ("name", "meta"),
    [("a\tb.jpg", "a%09b.jpg"), ("a\x7fb.jpg", "a%7Fb.jpg"), ("line\nbreak.jpg", "line%0Abreak.jpg"),
     ("a\x1bb.jpg", "a%1Bb.jpg"), ("plain ~name!.jpg", "plain ~name!.jpg")],
)  # fmt: skip
def test_source_name_with_unprintable_ascii_is_quoted(name: str, meta: str) -> None:
    # A raw tab, newline or escape would be refused in an HTTP header, or break a log line.
    assert source_name_meta(name) == meta
    value = object_metadata(line="l", camera="c", captured=WHEN, sha256=SHA, name=name)["source-name"]
    assert value == meta
    assert value.isascii()
    assert value.isprintable()


def _exif_jpeg(ifd0: dict[int, str], sub: dict[int, str]) -> bytes:
    exif = Image.Exif()
    for tag, value in ifd0.items():
        exif[tag] = value
    sub_ifd = exif.get_ifd(0x8769)
    for tag, value in sub.items():
        sub_ifd[tag] = value
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def _capture_time(data: bytes) -> datetime | None:
    facts = sniff_image(data, DEFAULT_FORMATS)
    assert facts is not None
    return facts.capture_time


@pytest.mark.parametrize(
    ("tz", "utc_hour"),
    [("UTC0", 3), ("XXX-3", 0), ("YYY+5", 8)],  # POSIX: "XXX-3" is 3 hours east of UTC
)
def test_naive_exif_time_is_the_pcs_local_time(
    local_tz: Callable[[str], None], tz: str, utc_hour: int
) -> None:
    local_tz(tz)
    data = _exif_jpeg({}, {36867: "2026:01:02 03:04:05"})
    assert _capture_time(data) == datetime(2026, 1, 2, utc_hour, 4, 5, tzinfo=UTC)


def test_exif_datetime_is_the_fallback_for_datetime_original(local_tz: Callable[[str], None]) -> None:
    local_tz("XXX-3")
    only_datetime = _exif_jpeg({306: "2026:01:02 03:04:05"}, {})
    assert _capture_time(only_datetime) == datetime(2026, 1, 2, 0, 4, 5, tzinfo=UTC)
    # DateTimeOriginal wins over DateTime when both are there.
    both = _exif_jpeg({306: "2026:01:02 03:04:05"}, {36867: "2025:06:07 08:09:10"})
    assert _capture_time(both) == datetime(2025, 6, 7, 5, 9, 10, tzinfo=UTC)


def test_each_exif_time_takes_its_own_offset(local_tz: Callable[[str], None]) -> None:
    # EXIF 2.31: OffsetTime belongs to DateTime, OffsetTimeOriginal to DateTimeOriginal.
    local_tz("UTC0")
    data = _exif_jpeg({306: "2026:01:02 03:04:05"}, {36880: "+02:00"})
    assert _capture_time(data) == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    data = _exif_jpeg({306: "2026:01:02 03:04:05"}, {36867: "2026:01:02 03:04:05", 36880: "+02:00",
                                                       36881: "-01:00"})  # fmt: skip
    assert _capture_time(data) == datetime(2026, 1, 2, 4, 4, 5, tzinfo=UTC)
