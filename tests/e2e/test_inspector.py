"""The inspector's flow in Debian's Chromium against the real review service on moto."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from partcheck.layout import human_decided_key
from services.review import core
from services.review.core import encode_id
from tests.e2e.conftest import (
    BUCKET,
    DESKTOP,
    PASSWORD,
    TABLET,
    Seeded,
    eventually,
    list_keys,
    login_with_keyboard,
)

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page

pytestmark = pytest.mark.e2e

LABEL_OF_KEY = {"o": "ok", "d": "defect"}


def expect(target: Any) -> Any:
    """Playwright's auto-waiting assertions (imported late: the package is a dev extra)."""
    from playwright.sync_api import expect as pw_expect

    return pw_expect(target)


def heading(page: Page) -> Locator:
    """The heading naming the image on screen."""
    return page.get_by_role("region", name="Image details").get_by_role("heading")


def wait_for_image(page: Page) -> None:
    """Until the image on screen has really been decoded."""
    page.wait_for_function(
        "() => { const img = document.querySelector('.loupe-image');"
        " return !!img && img.complete && img.naturalWidth > 0; }"
    )


def audit_records(s3: Any) -> list[dict[str, Any]]:
    """Every audit record in the bucket."""
    return [
        json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) for key in list_keys(s3, "audit/")
    ]


def api_post(ctx: BrowserContext, url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """A state-changing API call with the context's session and CSRF token."""
    token = ctx.request.get(f"{url}/api/me").json()["csrf_token"]
    return ctx.request.post(f"{url}{path}", data=body or {}, headers={"X-CSRF-Token": token})


def test_decide_three_images_with_the_keyboard_only(
    review_url: str,
    seed_unclear: Callable[[int], list[Seeded]],
    s3: Any,
    new_context: Callable[..., BrowserContext],
    artifacts: Path,
) -> None:
    seeded = seed_unclear(4)
    ctx = new_context()
    page = ctx.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    page.goto(review_url)
    page.get_by_label("User name").wait_for()
    page.screenshot(path=artifacts / "login-1366x768.png")
    login_with_keyboard(page, review_url, "alice")

    remaining = page.get_by_test_id("remaining")
    expect(remaining).to_have_text("4")
    expect(page.get_by_text("Claimed by you")).to_be_visible()
    wait_for_image(page)
    # The next image is fetched before the inspector gets there.
    page.wait_for_function(
        "id => performance.getEntriesByType('resource').some(e => e.name.includes(id))",
        arg=f"/api/items/{encode_id(seeded[1].key)}/image",
    )
    # Everything needed to decide fits a 1366x768 screen without scrolling.
    for button in ("Mark OK (O)", "Mark defect (D)", "Undo last decision (U)"):
        box = page.get_by_role("button", name=button).bounding_box()
        assert box is not None, button
        assert box["y"] + box["height"] <= DESKTOP["height"], button
    page.screenshot(path=artifacts / "review-1366x768.png")

    decided: dict[str, str] = {}
    for n, key in enumerate(["o", "d", "o"]):
        item = seeded[n]
        expect(heading(page)).to_have_text(item.name)
        expect(page.get_by_text("Claimed by you")).to_be_visible()
        page.keyboard.press(key)
        expect(remaining).to_have_text(str(3 - n))
        decided[item.key] = LABEL_OF_KEY[key]
        if n == 0:
            expect(page.get_by_text(f"{item.name} marked OK.")).to_be_visible()
            page.screenshot(path=artifacts / "review-undo-toast-1366x768.png")

    expect(heading(page)).to_have_text(seeded[3].name)
    # They left the queue...
    queue = ctx.request.get(f"{review_url}/api/queue").json()
    assert queue["total"] == 1
    assert [i["key"] for i in queue["items"]] == [seeded[3].key]
    eventually(lambda: list_keys(s3, "unclear/") == [seeded[3].key])
    # ...and sit in human_decided/ under the original's naming, with who decided them.
    expected = {human_decided_key(k, label): label for k, label in decided.items()}  # type: ignore[arg-type]
    assert list_keys(s3, "human_decided/") == sorted(expected)
    for decided_key in expected:
        meta = s3.head_object(Bucket=BUCKET, Key=decided_key)["Metadata"]
        assert meta["inspector"] == "alice"
    # ...and in the audit log, one record per decision.
    eventually(lambda: len(audit_records(s3)) == len(decided))
    records = [r for r in audit_records(s3) if r["action"] == "decision"]
    assert sorted((r["key"], r["label"], r["inspector"]) for r in records) == sorted(
        (k, label, "alice") for k, label in decided.items()
    )


def test_undo_with_the_keyboard_puts_the_image_back(
    review_url: str,
    seed_unclear: Callable[[int], list[Seeded]],
    s3: Any,
    new_context: Callable[..., BrowserContext],
) -> None:
    seeded = seed_unclear(2)
    page = new_context().new_page()
    login_with_keyboard(page, review_url, "alice")
    remaining = page.get_by_test_id("remaining")
    expect(page.get_by_text("Claimed by you")).to_be_visible()

    page.keyboard.press("d")
    expect(remaining).to_have_text("1")
    assert list_keys(s3, "human_decided/") == [human_decided_key(seeded[0].key, "defect")]
    page.keyboard.press("u")

    expect(remaining).to_have_text("2")
    expect(page.get_by_test_id("status")).to_have_text(f"Undone: {seeded[0].name} is back in the queue.")
    expect(heading(page)).to_have_text(seeded[0].name)
    expect(page.get_by_text("Claimed by you")).to_be_visible()
    assert list_keys(s3, "unclear/") == sorted(s.key for s in seeded)
    assert list_keys(s3, "human_decided/") == []
    assert sorted(r["action"] for r in audit_records(s3)) == ["decision", "undo"]


@pytest.mark.parametrize("review_overrides", [{"max_image_bytes": 4096}], indirect=True)
def test_an_image_too_large_to_show_says_why_and_can_still_be_decided(
    review_url: str,
    seed_unclear: Callable[[int], list[Seeded]],
    s3: Any,
    new_context: Callable[..., BrowserContext],
) -> None:
    # The sample photos are 9-20 KB: over this service's 4 KB limit for the browser, none can be shown.
    seeded = seed_unclear(1)
    page = new_context().new_page()
    login_with_keyboard(page, review_url, "alice")
    expect(heading(page)).to_have_text(seeded[0].name)
    alert = page.get_by_test_id("loupe").get_by_role("alert")
    expect(alert).to_contain_text("The image could not be shown:")
    expect(alert).to_contain_text("too large to show here")
    expect(alert).to_contain_text("it can still be decided")
    # Deciding copies inside S3, so the size that stops the browser does not stop the decision.
    page.keyboard.press("d")
    expect(page.get_by_test_id("remaining")).to_have_text("0")
    decided_key = human_decided_key(seeded[0].key, "defect")
    assert list_keys(s3, "human_decided/") == [decided_key]
    body = s3.get_object(Bucket=BUCKET, Key=decided_key)["Body"].read()
    assert len(body) > 4096


def test_two_inspectors_race_for_one_image_and_exactly_one_wins(
    review_url: str,
    seed_unclear: Callable[[int], list[Seeded]],
    s3: Any,
    new_context: Callable[..., BrowserContext],
    artifacts: Path,
) -> None:
    (only,) = seed_unclear(1)
    contexts = {name: new_context() for name in ("alice", "bob")}
    pages = {name: ctx.new_page() for name, ctx in contexts.items()}
    for name, page in pages.items():
        page.goto(review_url)
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password").fill(PASSWORD)
    # Both submit back to back: both pages load the queue and open the same image at once.
    for page in pages.values():
        page.get_by_label("Password").press("Enter")

    outcome: dict[str, str] = {}
    for name, page in pages.items():
        held = page.get_by_text("Claimed by you")
        taken = page.locator(".notice-warning")
        expect(held.or_(taken)).to_be_visible()
        outcome[name] = "won" if held.is_visible() else "lost"
    assert sorted(outcome.values()) == ["lost", "won"], outcome
    winner = next(n for n, o in outcome.items() if o == "won")
    loser = next(n for n, o in outcome.items() if o == "lost")

    message = pages[loser].locator(".notice-warning")
    expect(message).to_contain_text(f"{only.name}: claimed by {winner} until")
    expect(message).to_contain_text("Moved on to the next image.")
    expect(pages[loser].get_by_text("Nothing waiting for you")).to_be_visible()
    expect(pages[loser].get_by_text("claimed by other inspectors")).to_be_visible()
    pages[loser].screenshot(path=artifacts / "race-loser.png")

    pages[winner].keyboard.press("o")
    expect(pages[winner].get_by_test_id("remaining")).to_have_text("0")
    pages[winner].screenshot(path=artifacts / "race-winner.png")

    # The loser's late decision is refused and overwrites nothing.
    decision_path = f"/api/items/{encode_id(only.key)}/decision"
    late = api_post(contexts[loser], review_url, decision_path, {"label": "defect"})
    assert late.status == 409
    assert f"already decided by {winner} as ok" in late.json()["detail"]
    assert list_keys(s3, "human_decided/") == [human_decided_key(only.key, "ok")]
    decided_meta = s3.head_object(Bucket=BUCKET, Key=human_decided_key(only.key, "ok"))["Metadata"]
    assert decided_meta["inspector"] == winner
    eventually(lambda: len(audit_records(s3)) == 1)
    assert [(r["action"], r["inspector"]) for r in audit_records(s3)] == [("decision", winner)]


def test_tablet_layout_and_touch_buttons(
    review_url: str,
    seed_unclear: Callable[[int], list[Seeded]],
    s3: Any,
    new_context: Callable[..., BrowserContext],
    artifacts: Path,
) -> None:
    seeded = seed_unclear(3)
    ctx = new_context(viewport=TABLET, has_touch=True, is_mobile=True)
    page = ctx.new_page()
    page.goto(review_url)
    page.get_by_label("User name").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").tap()
    expect(page.get_by_text("Claimed by you")).to_be_visible()
    wait_for_image(page)
    page.screenshot(path=artifacts / "review-tablet-820x1180.png")

    # No sideways scrolling, and finger-sized targets for every action.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    for name in (
        "Mark OK (O)",
        "Mark defect (D)",
        "Next image (Right arrow or N)",
        "Previous image (Left arrow or P)",
        "Undo last decision (U)",
        "Zoom in (Z)",
    ):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box is not None, name
        assert min(box["height"], box["width"]) >= 44, name

    page.get_by_role("button", name="Zoom in (Z)").tap()
    expect(page.get_by_test_id("loupe")).to_have_attribute("data-scale", "2.50")
    page.screenshot(path=artifacts / "review-tablet-zoomed.png")
    page.get_by_role("button", name="Zoom off (Z)").tap()
    page.get_by_role("button", name="Next image (Right arrow or N)").tap()
    expect(heading(page)).to_have_text(seeded[1].name)
    expect(page.get_by_text("Claimed by you")).to_be_visible()
    page.get_by_role("button", name="Mark defect (D)").tap()
    expect(page.get_by_test_id("remaining")).to_have_text("2")
    assert list_keys(s3, "human_decided/") == [human_decided_key(seeded[1].key, "defect")]


def test_history_and_dashboard_show_the_decisions(
    review_url: str,
    seed_unclear: Callable[[int], list[Seeded]],
    new_context: Callable[..., BrowserContext],
    artifacts: Path,
) -> None:
    seeded = seed_unclear(3)
    ctx = new_context()
    page = ctx.new_page()
    login_with_keyboard(page, review_url, "alice")
    expect(page.get_by_text("Claimed by you")).to_be_visible()
    page.keyboard.press("o")
    expect(page.get_by_test_id("remaining")).to_have_text("2")
    expect(page.get_by_text("Claimed by you")).to_be_visible()
    page.get_by_role("textbox", name="Note").fill("porosity near the rim")
    page.get_by_role("button", name="Mark defect (D)").click()
    expect(page.get_by_test_id("remaining")).to_have_text("1")

    page.get_by_role("link", name="History").click()
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_contain_text(seeded[1].name)
    expect(rows.nth(1)).to_contain_text("Defect")
    expect(rows.nth(1)).to_contain_text("porosity near the rim")
    expect(rows.nth(2)).to_contain_text(seeded[0].name)
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=artifacts / "history-1366x768.png")

    page.get_by_label("Label").select_option("ok")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text(seeded[0].name)

    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("count-human_decided")).to_have_text("2")
    expect(page.get_by_test_id("count-unclear")).to_have_text("1")
    expect(page.get_by_test_id("throughput-bar")).to_have_count(24)
    expect(page.get_by_test_id("oldest-age")).not_to_have_text("none waiting")
    page.screenshot(path=artifacts / "dashboard-1366x768.png", full_page=True)

    page.set_viewport_size(TABLET)
    page.screenshot(path=artifacts / "dashboard-tablet-820x1180.png", full_page=True)


def test_history_loads_older_pages(
    review_url: str, s3: Any, new_context: Callable[..., BrowserContext]
) -> None:
    # 55 decisions written straight into the audit log: one page of 50, then the 5 older ones.
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(55):
        at = now - timedelta(minutes=i + 1)
        marker = {
            "key": f"unclear/old/{i:02d}.jpg",
            "decided_key": f"human_decided/old/ok_{i:02d}.jpg",
            "label": "ok",
            "decided_at": core.iso(at),
            "original_metadata": {},
        }
        record = core.audit_record("decision", marker, at, "bob")
        s3.put_object(Bucket=BUCKET, Key=core.audit_key(at, f"{i:032x}"), Body=json.dumps(record).encode())
    ctx = new_context()
    page = ctx.new_page()
    login_with_keyboard(page, review_url, "alice")
    page.get_by_role("link", name="History").click()
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(51)
    expect(rows.nth(50)).to_contain_text("49.jpg")
    page.get_by_role("button", name="Load older").click()
    expect(rows).to_have_count(56)
    expect(rows.nth(55)).to_contain_text("54.jpg")
    expect(page.get_by_role("button", name="Load older")).to_have_count(0)


def test_loupe_zooms_with_the_wheel_and_pans_with_a_drag(
    review_url: str,
    seed_unclear: Callable[[int], list[Seeded]],
    new_context: Callable[..., BrowserContext],
    artifacts: Path,
) -> None:
    seed_unclear(1)
    page = new_context().new_page()
    login_with_keyboard(page, review_url, "alice")
    expect(page.get_by_text("Claimed by you")).to_be_visible()
    wait_for_image(page)
    loupe = page.get_by_test_id("loupe")
    box = loupe.bounding_box()
    assert box is not None
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    page.mouse.move(centre_x, centre_y)
    page.mouse.wheel(0, -400)
    page.wait_for_function("() => Number(document.querySelector('.loupe').dataset.scale) > 1.5")
    image = page.locator(".loupe-image")
    before = image.evaluate("img => img.style.transform")

    page.mouse.down()
    page.mouse.move(centre_x + 80, centre_y + 40, steps=5)
    page.mouse.up()
    after = image.evaluate("img => img.style.transform")
    assert after != before
    page.screenshot(path=artifacts / "review-loupe-1366x768.png")

    page.keyboard.press("0")
    expect(loupe).to_have_attribute("data-scale", "1.00")
