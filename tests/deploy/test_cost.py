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
