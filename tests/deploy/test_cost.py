"""`partcheck cost`: the arithmetic of its line items and the comparison with the original design."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from partcheck.cli import app
from partcheck.cost import Scenario, Usage, estimate, load_prices
from partcheck.errors import InvalidInput

pytestmark = pytest.mark.unit

runner = CliRunner()


def _cost_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["cost", "--json", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def _item(items: object, name: str) -> dict[str, float]:
    assert isinstance(items, list)
    matches = [i for i in items if i["item"] == name]
    assert len(matches) == 1, f"{name!r} not found once in {[i['item'] for i in items]}"
    found: dict[str, float] = matches[0]
    return found


def test_original_scenario_is_at_least_a_hundred_times_cheaper() -> None:
    data = _cost_json("--images-per-day", "1000", "--unclear-rate", "0.05", "--image-kb", "1024")
    ours, original = data["total_usd_per_month"], data["original_usd_per_month"]
    assert isinstance(ours, float)
    assert isinstance(original, float)
    assert ours > 0
    assert original / ours >= 100, (ours, original)
    # The always-on Rekognition endpoint alone is 4 USD x 730 h.
    assert _item(data["original_line_items"], "Custom Labels model running around the clock")[
        "usd_per_month"
    ] == pytest.approx(2920.0)


def test_predict_compute_line_item_arithmetic() -> None:
    data = _cost_json("--images-per-day", "1000")
    item = _item(data["line_items"], "predict compute")
    # 1,000 images/day over 730/24 days, 0.4 s at 1 GB each, at 0.0000166667 USD per GB-s.
    expected_gb_s = 1000 * 730 / 24 * 0.4 * 1.0
    assert item["quantity"] == pytest.approx(expected_gb_s)
    assert item["unit_usd"] == pytest.approx(0.0000166667)
    assert item["usd_per_month"] == pytest.approx(expected_gb_s * 0.0000166667, abs=1e-6)
    assert item["usd_per_month"] == pytest.approx(0.2028, abs=1e-4)


def test_storage_line_item_follows_image_size() -> None:
    data = _cost_json("--images-per-day", "1000", "--image-kb", "1024")
    item = _item(data["line_items"], "storage of one month's images (Standard)")
    # 1 MiB per image: 30,416.7 images a month are 29.70 GiB.
    assert item["quantity"] == pytest.approx(1000 * 730 / 24 / 1024)
    assert item["usd_per_month"] == pytest.approx(item["quantity"] * 0.023, abs=1e-6)


def test_totals_are_the_sums_of_their_line_items() -> None:
    data = _cost_json("--images-per-day", "5000", "--unclear-rate", "0.2")
    for key, items in (
        ("total_usd_per_month", "line_items"),
        ("original_usd_per_month", "original_line_items"),
    ):
        listed = data[items]
        assert isinstance(listed, list)
        assert data[key] == pytest.approx(sum(i["usd_per_month"] for i in listed), abs=0.01)
        for i in listed:
            assert i["usd_per_month"] == pytest.approx(i["quantity"] * i["unit_usd"], abs=1e-6)


def test_more_unclear_images_cost_more_s3_requests() -> None:
    prices = load_prices()
    low = estimate(Scenario(unclear_rate=0.0), prices)
    high = estimate(Scenario(unclear_rate=1.0), prices)
    assert high.total("partcheck") > low.total("partcheck")
    assert high.total("original") > low.total("original")


def test_usage_change_is_reflected() -> None:
    prices = load_prices()
    base = estimate(Scenario(), prices)
    slower = estimate(Scenario(), prices, Usage(predict_seconds=0.8))
    delta = slower.total("partcheck") - base.total("partcheck")
    assert delta == pytest.approx(1000 * 730 / 24 * 0.4 * prices.lambda_.x86_gb_second_usd)


def test_prices_file_is_dated() -> None:
    prices = load_prices()
    assert prices.date[:4].isdigit()
    assert prices.rekognition_custom_labels_usd_per_inference_hour == 4.0
    assert "t2.medium" in prices.ec2_linux_usd_per_hour


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--instance-type", "x9.huge"], "no price for instance type"),
        (["--unclear-rate", "1.5"], "unclear-rate"),
        (["--images-per-day", "-1"], "images-per-day"),
    ],
)
def test_bad_options_fail_clearly(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["cost", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_bad_prices_file_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text('{"date": "2026-01-01"}')
    with pytest.raises(InvalidInput, match="invalid prices file"):
        load_prices(bad)
    result = runner.invoke(app, ["cost", "--prices-file", str(bad)])
    assert result.exit_code == 2
    assert "invalid prices file" in result.output


def test_scenario_rejects_nonsense() -> None:
    with pytest.raises(InvalidInput, match="image size"):
        Scenario(image_kb=0)


def test_results_table_in_the_docs_is_current() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cost.md").read_text()
    rows = re.findall(
        r"^\| ([\d,]+) images/day, 1 MiB, 5 % unclear.*?\| ([\d,.]+) USD \| ([\d,.]+) USD \|", doc, re.M
    )
    assert len(rows) == 3
    for images, ours, original in rows:
        est = estimate(Scenario(images_per_day=float(images.replace(",", ""))), load_prices())
        assert f"{est.total('partcheck'):,.2f}" == ours, "docs/cost.md is stale"
        assert f"{est.total('original'):,.2f}" == original, "docs/cost.md is stale"


IMAGES = 1000 * 730 / 24  # one month at the default 1,000 images a day: 30,416.7
UNCLEAR = IMAGES * 0.05


def test_s3_requests_are_the_ones_the_code_makes() -> None:
    items = _cost_json()["line_items"]
    # Agent PUT and router COPY per image, the review's 5 per unclear image; predict's GET and the review's
    # 2 per unclear image. No HEAD on the happy path (docs/pipeline.md): the router copies conditionally.
    puts, gets = _item(items, "PUT/COPY/LIST requests"), _item(items, "GET/HEAD requests")
    assert puts["quantity"] == pytest.approx((IMAGES * 2 + UNCLEAR * 5) / 1000)
    assert gets["quantity"] == pytest.approx((IMAGES * 1 + UNCLEAR * 2) / 1000)
    # The router deletes a batch's sources with one DeleteObjects, a POST priced like a PUT; batches of one.
    deletes = _item(items, "router source deletes (DeleteObjects, one POST per batch)")
    assert deletes["quantity"] == pytest.approx(IMAGES / 1000)
    assert deletes["unit_usd"] == pytest.approx(0.005)
    # Before routing to unclear/ the router reads the decision marker (a 404 is charged as a GET too).
    marker = _item(items, "router decision-marker reads (unclear routes)")
    assert marker["quantity"] == pytest.approx(UNCLEAR / 1000)


def test_sqs_requests_count_the_notification_and_each_batch() -> None:
    prices = load_prices()
    name = "messages (S3 notification; per batch: send, 2 receives, 2 deletes)"
    # Batches of one: S3's SendMessage, predict's SendMessageBatch, and per mapping the receive that
    # returned the batch and its DeleteMessageBatch: 6 requests per image, not 2.
    one = _item(_cost_json()["line_items"], name)
    assert one["quantity"] == pytest.approx(IMAGES * 6 / 1e6)
    assert one["usd_per_month"] == pytest.approx(0.0730, abs=1e-4)
    # Ten to a batch: the notification stays one per image, the rest is shared by ten images.
    tens = estimate(Scenario(), prices, Usage(images_per_batch=10))
    (ten,) = [i for i in tens.items if i.item == name]
    assert ten.quantity == pytest.approx(IMAGES * (1 + 5 / 10) / 1e6)
    with pytest.raises(InvalidInput, match="images per batch"):
        Usage(images_per_batch=0.5)


def test_noncurrent_versions_follow_the_template_lifecycle() -> None:
    from tests.deploy.cfn import load_template

    resources = load_template()["Resources"]
    days = {}
    for name in ("InboundBucket", "PredictionBucket"):
        (rule,) = resources[name]["Properties"]["LifecycleConfiguration"]["Rules"]
        days[name] = rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
    # S3 rounds an expiry up to the next midnight UTC: half a day more on average.
    usage = Usage()
    assert usage.inbound_noncurrent_days == days["InboundBucket"] + 0.5
    assert usage.prediction_noncurrent_days == days["PredictionBucket"] + 0.5
    items = _cost_json()["line_items"]
    # Every routed upload stays in the versioned inbound bucket for 7.5 days: 1,000 x 7.5 MiB = 7.32 GiB.
    inbound = _item(items, "inbound bucket: routed uploads as noncurrent versions")
    assert inbound["quantity"] == pytest.approx(1000 * 7.5 / 1024)
    # Each decided unclear/ image stays for 30.5 days: 50 x 30.5 MiB = 1.49 GiB.
    decided = _item(items, "prediction bucket: decided unclear/ images as noncurrent versions")
    assert decided["quantity"] == pytest.approx(50 * 30.5 / 1024)


def test_default_totals_against_the_earlier_model() -> None:
    est = estimate(Scenario(), load_prices())
    # The earlier model gave 18.4542 USD; per month it missed (30,416.7 images, 1,520.8 unclear):
    expected = (
        18.4542
        + IMAGES / 1000 * 0.005  # the router's DeleteObjects, 0.1521
        + IMAGES * 4 * 0.4e-6  # SQS: 6 requests per image, not 2; 0.0487
        + 1000 * 7.5 / 1024 * 0.023  # inbound noncurrent versions, 0.1685
        + 50 * 30.5 / 1024 * 0.023  # prediction bucket noncurrent versions, 0.0343
        - IMAGES * 2 / 1000 * 0.0004  # the two HEADs the router never makes, 0.0243
        + UNCLEAR / 1000 * 0.0004  # the decision-marker GET on unclear routes, 0.0006
    )
    assert est.total("partcheck") == pytest.approx(expected, abs=1e-4)
    assert f"{est.total('partcheck'):,.2f}" == "18.83"
    # The original's shared S3 traffic loses the same two HEADs: 2,955.6445 - 0.0243.
    assert est.total("original") == pytest.approx(2955.6445 - IMAGES * 2 / 1000 * 0.0004, abs=1e-4)
