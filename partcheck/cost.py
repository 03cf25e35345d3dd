"""`partcheck cost`: monthly cost of this deployment beside the original design."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from partcheck.errors import InvalidInput

Design = Literal["partcheck", "original"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LambdaPrices(_Strict):
    requests_usd_per_million: float = Field(ge=0)
    x86_gb_second_usd: float = Field(ge=0)


class S3Prices(_Strict):
    storage_usd_per_gb_month: float = Field(ge=0)
    put_copy_post_list_usd_per_1000: float = Field(ge=0)
    get_head_usd_per_1000: float = Field(ge=0)


class SqsPrices(_Strict):
    requests_usd_per_million: float = Field(ge=0)


class CloudWatchPrices(_Strict):
    standard_alarm_usd_per_month: float = Field(ge=0)
    logs_ingestion_usd_per_gb: float = Field(ge=0)


class Prices(BaseModel):
    """The prices file: one region's on-demand list prices and the date they were read."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    about: str = Field(alias="_about")
    date: str
    region: str
    currency: Literal["USD"]
    checked_against: str
    hours_per_month: float = Field(gt=0)
    lambda_: LambdaPrices = Field(alias="lambda")
    s3_standard: S3Prices
    sqs_standard: SqsPrices
    ec2_linux_usd_per_hour: dict[str, float]
    ebs_gp3_usd_per_gb_month: float = Field(ge=0)
    cloudwatch: CloudWatchPrices
    ecr_storage_usd_per_gb_month: float = Field(ge=0)
    xray_traces_recorded_usd_per_million: float = Field(ge=0)
    rekognition_custom_labels_usd_per_inference_hour: float = Field(ge=0)


def load_prices(path: Path | None = None) -> Prices:
    """Read the prices file (the packaged `partcheck/prices.json` unless `path` is given)."""
    try:
        text = path.read_text() if path else resources.files("partcheck").joinpath("prices.json").read_text()
        return Prices.model_validate(json.loads(text))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"cannot read prices file {path or 'partcheck/prices.json'}: {exc}") from exc
    except ValidationError as exc:
        raise InvalidInput(f"invalid prices file: {exc.errors(include_url=False)}") from exc


@dataclass(frozen=True)
class Scenario:
    """The workload to price."""

    images_per_day: float = 1000
    unclear_rate: float = 0.05
    image_kb: float = 1024
    instance_type: str = "t3.small"

    def __post_init__(self) -> None:
        if self.images_per_day < 0:
            raise InvalidInput(f"images per day must be >= 0, got {self.images_per_day}")
        if not 0.0 <= self.unclear_rate <= 1.0:
            raise InvalidInput(f"unclear rate must be within 0-1, got {self.unclear_rate}")
        if self.image_kb <= 0:
            raise InvalidInput(f"image size must be > 0 KB, got {self.image_kb}")


@dataclass(frozen=True)
class Usage:
    """How the deployment uses each service; the figures follow deploy/template.yaml (see docs/cost.md)."""

    predict_memory_gb: float = 1.0  # template: PredictFunction MemorySize 1024
    # ONNX inference takes tens of ms (bench/model.py); the S3 GET and SQS send dominate on Lambda.
    predict_seconds: float = 0.4
    router_memory_gb: float = 0.25  # template: RouterFunction MemorySize 256
    router_seconds: float = 0.15
    # Messages per SQS batch, for both functions (template BatchSize: predict 5, router 10). Each batch is
    # one invocation and one request of each batched kind; at low rates a batch holds one message.
    images_per_batch: float = 1.0
    # The original's Lambda waits for a synchronous Rekognition call; 128 MB was its console default.
    original_lambda_memory_gb: float = 0.125
    original_lambda_seconds: float = 1.0
    ebs_root_gb: float = 8.0
    alarms: int = 4  # template: two DLQ-depth alarms and two function-error alarms
    # Each SQS event source mapping keeps about five long-polling (20 s) receivers running when idle.
    sqs_idle_pollers: int = 10  # two mappings: uploads -> predict, predictions -> router
    sqs_long_poll_seconds: float = 20.0
    ecr_images_gb: float = 0.5  # predict and router images together
    log_kb_per_invocation: float = 1.0
    # S3 requests per image, the same in both designs: agent PUT and router COPY; predict's GET. No HEAD
    # on the happy path: the router copies conditionally, looking closer only when S3 refuses it.
    s3_put_per_image: float = 2.0
    s3_get_per_image: float = 1.0
    # Per unclear image, the review app: claim, decision marker, human_decided copy, audit record;
    # then the image, its HEAD and a queue LIST page.
    s3_put_per_unclear: float = 5.0
    s3_get_per_unclear: float = 2.0
    # This design only: the router deletes each batch's sources with one DeleteObjects (a POST, priced like
    # a PUT; a single DELETE would be free), and reads the decision marker before routing to unclear/.
    s3_delete_objects_per_batch: float = 1.0
    s3_marker_get_per_unclear: float = 1.0
    # SQS: S3's notification is one SendMessage per upload, never batched. Per batch: predict's
    # SendMessageBatch, each mapping's DeleteMessageBatch, and each mapping's ReceiveMessage that returned
    # it (at most one more than the idle polling line counts, as it ends a long poll early).
    sqs_requests_per_image: float = 1.0
    sqs_requests_per_batch: float = 5.0
    # Both buckets are versioned: a deleted object stays as a noncurrent version for the template's
    # NoncurrentDays (inbound 7, predictions 30), plus half a day on average as S3 rounds expiry up to
    # the next midnight UTC. Inbound: every routed upload; predictions: each decided unclear/ image.
    inbound_noncurrent_days: float = 7.5
    prediction_noncurrent_days: float = 30.5

    def __post_init__(self) -> None:
        if self.images_per_batch < 1:
            raise InvalidInput(f"images per batch must be >= 1, got {self.images_per_batch}")


@dataclass(frozen=True)
class LineItem:
    """One priced quantity: `usd_per_month` is `quantity` times `unit_usd`."""

    design: Design
    service: str
    item: str
    quantity: float
    unit: str
    unit_usd: float

    @property
    def usd_per_month(self) -> float:
        """The monthly cost of this item."""
        return self.quantity * self.unit_usd

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the product included."""
        return {**asdict(self), "usd_per_month": round(self.usd_per_month, 6)}


@dataclass(frozen=True)
class Estimate:
    """Both designs' line items for one scenario."""

    scenario: Scenario
    prices: Prices
    items: list[LineItem]

    def total(self, design: Design) -> float:
        """Monthly total of one design."""
        return sum(i.usd_per_month for i in self.items if i.design == design)

    def to_dict(self) -> dict[str, Any]:
        """The `--json` output."""
        ours, original = self.total("partcheck"), self.total("original")
        return {
            "scenario": asdict(self.scenario),
            "prices": {"date": self.prices.date, "region": self.prices.region, "currency": "USD"},
            "total_usd_per_month": round(ours, 2),
            "original_usd_per_month": round(original, 2),
            "times_cheaper": round(original / ours, 1) if ours > 0 else None,
            "line_items": [i.to_dict() for i in self.items if i.design == "partcheck"],
            "original_line_items": [i.to_dict() for i in self.items if i.design == "original"],
        }


def _instance_price(prices: Prices, instance_type: str) -> float:
    try:
        return prices.ec2_linux_usd_per_hour[instance_type]
    except KeyError:
        known = ", ".join(sorted(prices.ec2_linux_usd_per_hour))
        raise InvalidInput(f"no price for instance type {instance_type!r}; known: {known}") from None


def _shared_items(design: Design, s: Scenario, p: Prices, u: Usage, images: float) -> list[LineItem]:
    """S3 storage and requests: both designs store and move the same images."""
    unclear = images * s.unclear_rate
    gb = images * s.image_kb / (1024 * 1024)
    return [
        LineItem(
            design,
            "S3",
            "storage of one month's images (Standard)",
            gb,
            "GB-month",
            p.s3_standard.storage_usd_per_gb_month,
        ),
        LineItem(
            design,
            "S3",
            "PUT/COPY/LIST requests",
            (images * u.s3_put_per_image + unclear * u.s3_put_per_unclear) / 1000,
            "1k requests",
            p.s3_standard.put_copy_post_list_usd_per_1000,
        ),
        LineItem(
            design,
            "S3",
            "GET/HEAD requests",
            (images * u.s3_get_per_image + unclear * u.s3_get_per_unclear) / 1000,
            "1k requests",
            p.s3_standard.get_head_usd_per_1000,
        ),
    ]


def estimate(scenario: Scenario, prices: Prices, usage: Usage | None = None) -> Estimate:
    """Price one month of `scenario` for this deployment and for the original design."""
    u = usage or Usage()
    p, s = prices, scenario
    hours = p.hours_per_month
    images = s.images_per_day * hours / 24
    month_seconds = hours * 3600
    lam = p.lambda_
    items: list[LineItem] = []

    batches = images / u.images_per_batch  # of each function
    invocations = 2 * batches
    unclear = images * s.unclear_rate
    gb_per_image = s.image_kb / (1024 * 1024)
    items += [
        LineItem(
            "partcheck",
            "Lambda",
            "predict + router requests",
            invocations / 1e6,
            "1M requests",
            lam.requests_usd_per_million,
        ),
        LineItem(
            "partcheck",
            "Lambda",
            "predict compute",
            images * u.predict_seconds * u.predict_memory_gb,
            "GB-s",
            lam.x86_gb_second_usd,
        ),
        LineItem(
            "partcheck",
            "Lambda",
            "router compute",
            images * u.router_seconds * u.router_memory_gb,
            "GB-s",
            lam.x86_gb_second_usd,
        ),
        LineItem(
            "partcheck",
            "SQS",
            "messages (S3 notification; per batch: send, 2 receives, 2 deletes)",
            (images * u.sqs_requests_per_image + batches * u.sqs_requests_per_batch) / 1e6,
            "1M requests",
            p.sqs_standard.requests_usd_per_million,
        ),
        LineItem(
            "partcheck",
            "SQS",
            "event source long polling while idle",
            u.sqs_idle_pollers * month_seconds / u.sqs_long_poll_seconds / 1e6,
            "1M requests",
            p.sqs_standard.requests_usd_per_million,
        ),
        *_shared_items("partcheck", s, p, u, images),
        LineItem(
            "partcheck",
            "S3",
            "router source deletes (DeleteObjects, one POST per batch)",
            batches * u.s3_delete_objects_per_batch / 1000,
            "1k requests",
            p.s3_standard.put_copy_post_list_usd_per_1000,
        ),
        LineItem(
            "partcheck",
            "S3",
            "router decision-marker reads (unclear routes)",
            unclear * u.s3_marker_get_per_unclear / 1000,
            "1k requests",
            p.s3_standard.get_head_usd_per_1000,
        ),
        LineItem(
            "partcheck",
            "S3",
            "inbound bucket: routed uploads as noncurrent versions",
            s.images_per_day * u.inbound_noncurrent_days * gb_per_image,
            "GB-month",
            p.s3_standard.storage_usd_per_gb_month,
        ),
        LineItem(
            "partcheck",
            "S3",
            "prediction bucket: decided unclear/ images as noncurrent versions",
            s.images_per_day * s.unclear_rate * u.prediction_noncurrent_days * gb_per_image,
            "GB-month",
            p.s3_standard.storage_usd_per_gb_month,
        ),
        LineItem(
            "partcheck",
            "EC2",
            f"review app, Elastic Beanstalk single {s.instance_type}",
            hours,
            "instance-hours",
            _instance_price(p, s.instance_type),
        ),
        LineItem(
            "partcheck",
            "EBS",
            "review instance root volume (gp3)",
            u.ebs_root_gb,
            "GB-month",
            p.ebs_gp3_usd_per_gb_month,
        ),
        LineItem(
            "partcheck",
            "CloudWatch",
            "alarms (DLQ depth, function errors)",
            u.alarms,
            "alarms",
            p.cloudwatch.standard_alarm_usd_per_month,
        ),
        LineItem(
            "partcheck",
            "CloudWatch",
            "Lambda log ingestion",
            invocations * u.log_kb_per_invocation / (1024 * 1024),
            "GB",
            p.cloudwatch.logs_ingestion_usd_per_gb,
        ),
        LineItem(
            "partcheck",
            "X-Ray",
            "traces (tracing is active; every invocation at low rates)",
            invocations / 1e6,
            "1M traces",
            p.xray_traces_recorded_usd_per_million,
        ),
        LineItem(
            "partcheck",
            "ECR",
            "predict and router images",
            u.ecr_images_gb,
            "GB-month",
            p.ecr_storage_usd_per_gb_month,
        ),
    ]

    items += [
        LineItem(
            "original",
            "Rekognition",
            "Custom Labels model running around the clock",
            hours,
            "inference-hours",
            p.rekognition_custom_labels_usd_per_inference_hour,
        ),
        LineItem("original", "Lambda", "requests", images / 1e6, "1M requests", lam.requests_usd_per_million),
        LineItem(
            "original",
            "Lambda",
            "compute (waiting on Rekognition)",
            images * u.original_lambda_seconds * u.original_lambda_memory_gb,
            "GB-s",
            lam.x86_gb_second_usd,
        ),
        *_shared_items("original", s, p, u, images),
        LineItem(
            "original",
            "EC2",
            "review app, Elastic Beanstalk t2.medium",
            hours,
            "instance-hours",
            _instance_price(p, "t2.medium"),
        ),
        LineItem(
            "original",
            "EBS",
            "instance root volume (gp3)",
            u.ebs_root_gb,
            "GB-month",
            p.ebs_gp3_usd_per_gb_month,
        ),
    ]
    return Estimate(scenario, prices, items)


def _render(est: Estimate) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    s = est.scenario
    designs: tuple[tuple[Design, str], ...] = (
        ("partcheck", "partcheck (Lambda + ONNX)"),
        ("original", "original (Rekognition)"),
    )
    for design, title in designs:
        table = Table(
            title=f"{title}: {s.images_per_day:g} images/day of {s.image_kb:g} KB, "
            f"{s.unclear_rate:.0%} unclear",
            title_justify="left",
        )
        for col in ("service", "item", "quantity", "unit", "unit USD", "USD/month"):
            numeric = col in {"quantity", "unit USD", "USD/month"}
            table.add_column(col, justify="right" if numeric else "left", no_wrap=col != "item")
        for i in est.items:
            if i.design == design:
                table.add_row(
                    i.service,
                    i.item,
                    f"{i.quantity:,.4g}",
                    i.unit,
                    f"{i.unit_usd:g}",
                    f"{i.usd_per_month:,.2f}",
                )
        table.add_row("", "total", "", "", "", f"{est.total(design):,.2f}", style="bold")
        console.print(table)
    ours, original = est.total("partcheck"), est.total("original")
    ratio = f"{original / ours:,.0f}x cheaper" if ours > 0 else "free"
    console.print(
        f"partcheck {ours:,.2f} USD/month vs original {original:,.2f} USD/month: {ratio} "
        f"(prices {est.prices.region}, {est.prices.date}, no free tier)"
    )


def cost(
    images_per_day: Annotated[float, typer.Option(min=0, help="images uploaded per day")] = 1000,
    unclear_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share sent to human review, 0-1")
    ] = 0.05,
    image_kb: Annotated[float, typer.Option(min=0.001, help="average image size in KB")] = 1024,
    instance_type: Annotated[str, typer.Option(help="EC2 type of the review app's instance")] = "t3.small",
    prices_file: Annotated[Path | None, typer.Option(help="another prices JSON (default: packaged)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Estimate the monthly AWS cost of this deployment beside the original design."""
    try:
        est = estimate(
            Scenario(images_per_day, unclear_rate, image_kb, instance_type), load_prices(prices_file)
        )
    except InvalidInput as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(est.to_dict(), indent=2))
    else:
        _render(est)
