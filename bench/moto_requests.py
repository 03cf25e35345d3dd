"""CPU per request type in the local stack's moto server, one request at a time.

`python -m bench moto_requests` (not part of `make bench`): starts `partcheck moto` as the stack does
(patched, keep-alive, snapshotting to a scratch folder), creates the stack's buckets and queues, then
sends each request type the pipeline uses N times from one thread and reads the moto process's CPU time
(user + system, /proc) before and after. The client's own CPU (boto3 building, signing and parsing) is
reported beside it. The request mix per image is the one counted on the pipeline bench (docs/pipeline.md),
so the weighted sum is moto's CPU per image without the cost of concurrency.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.proc import cpu_seconds
from partcheck.aws import AwsConfig, client
from partcheck.messages import Prediction, PredictionMessage
from partcheck.stack.bootstrap import bootstrap
from partcheck.stack.config import StackSettings, free_port, use_local_credentials
from partcheck.thresholds import Thresholds
from services.router.core import object_metadata

ROOT = Path(__file__).resolve().parents[1]
# Requests per sorted image on the pipeline bench (docs/pipeline.md, "Throughput of the local stack").
PER_IMAGE = {
    "PutObject (with the S3 -> SQS notification)": 1.0,
    "GetObject": 1.0,
    "CopyObject (If-None-Match, copy-source-if-match)": 1.0,
    "GetObject of an absent decision marker (404)": 0.45,
    "ReceiveMessage (10)": 0.43,
    "DeleteMessageBatch (10)": 0.42,
    "SendMessageBatch (10)": 0.21,
    "DeleteObjects (10)": 0.21,
}
# What the router writes on a sorted image, from the router's own function, so the copy carries the
# same headers as in the pipeline.
METADATA = object_metadata(
    PredictionMessage(
        outcome="classified",
        bucket="partcheck-inbound",
        key="line-1/cam-1/cast_ok_0_1.jpeg",
        etag="0" * 32,
        metadata={"line": "line-1", "camera": "cam-1", "sha256": "0" * 64},
        event_time="2026-12-03T12:00:00+00:00",
        predicted_at="2026-12-03T12:00:00.1+00:00",
        timings_ms={"classify": 2.0},
        prediction=Prediction(
            label="unclear",
            confidence=0.9,
            p_defect=0.1,
            model_name="partcheck-defect",
            model_version="2026.12.02-f22857da",
            thresholds=Thresholds(t_ok=0.981, t_defect=0.6866),
            reason="below threshold: p_ok 0.9000 < 0.9810",
            ood_score=0.8,
        ),
    )
)


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def run(quick: bool = False) -> dict[str, Any]:
    """Start moto, send each request type n times, report moto's and the client's CPU per request."""
    n = 100 if quick else 300
    use_local_credentials()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="partcheck-moto-requests-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "partcheck", "moto", "--port", str(port), "--state-dir", str(workdir / "m")],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        settings = StackSettings(endpoint_url=endpoint)
        aws = AwsConfig(endpoint_url=endpoint)
        s3, sqs = client("s3", aws), client("sqs", aws)
        deadline = time.monotonic() + 60
        while True:
            try:
                bootstrap(s3, sqs, settings)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        measured = _measure(proc.pid, s3, sqs, settings, n)
    finally:
        proc.terminate()
        proc.wait(60)
    per_image = sum(measured[name]["moto_ms"] * weight for name, weight in PER_IMAGE.items())
    rows: list[dict[str, Any]] = [
        {
            "metric": f"{name}: moto / client CPU",
            "value": f"{r['moto_ms']:.2f} / {r['client_ms']:.2f}",
            "unit": "ms per request",
            "target": "",
            "ok": None,
        }
        for name, r in measured.items()
    ]
    rows.append(
        {
            "metric": "moto CPU per image, weighted by the pipeline's request mix (no concurrency)",
            "value": per_image,
            "unit": "ms",
            "target": "",
            "ok": None,
        }
    )
    return {"title": f"moto CPU per request type ({n} each, one at a time)", "rows": rows, "raw": measured}


def _measure(pid: int, s3: Any, sqs: Any, settings: StackSettings, n: int) -> dict[str, dict[str, float]]:
    inbound, predictions = settings.inbound_bucket, settings.prediction_bucket
    uploads_url = sqs.get_queue_url(QueueName=settings.uploads_queue)["QueueUrl"]
    predictions_url = sqs.get_queue_url(QueueName=settings.predictions_queue)["QueueUrl"]
    bodies = [p.read_bytes() for p in sorted((ROOT / "samples").glob("*.jpeg"))]
    prediction = json.dumps({"schema_version": 1, "outcome": "classified", "pad": "x" * 900})
    etags: dict[str, str] = {}
    handles: list[list[str]] = []
    out: dict[str, dict[str, float]] = {}

    def measure(name: str, request: Callable[[int], None], count: int) -> None:
        moto0, own0 = cpu_seconds(pid), _own_cpu_s()
        for i in range(count):
            request(i)
        moto1, own1 = cpu_seconds(pid), _own_cpu_s()
        out[name] = {"moto_ms": (moto1 - moto0) * 1000 / count, "client_ms": (own1 - own0) * 1000 / count}

    def put(i: int) -> None:
        key = f"b/{i:05d}.jpeg"
        etags[key] = s3.put_object(Bucket=inbound, Key=key, Body=bodies[i % len(bodies)])["ETag"]

    def get(i: int) -> None:
        s3.get_object(Bucket=inbound, Key=f"b/{i:05d}.jpeg")["Body"].read()

    def marker(i: int) -> None:
        with contextlib.suppress(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=predictions, Key=f"decisions/unclear/b/{i:05d}.jpeg.json")

    def copy(i: int) -> None:
        key = f"b/{i:05d}.jpeg"
        s3.copy_object(
            Bucket=predictions,
            Key=f"okay/{key}",
            CopySource={"Bucket": inbound, "Key": key},
            MetadataDirective="REPLACE",
            Metadata=METADATA,
            ContentType="image/jpeg",
            IfNoneMatch="*",
            CopySourceIfMatch=etags[key],
        )

    def send(i: int) -> None:
        entries = [{"Id": str(j), "MessageBody": prediction} for j in range(10)]
        sqs.send_message_batch(QueueUrl=predictions_url, Entries=entries)

    def receive(i: int) -> None:
        r = sqs.receive_message(
            QueueUrl=predictions_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=600,
            MessageSystemAttributeNames=["All"],
        )
        handles.append([m["ReceiptHandle"] for m in r.get("Messages", [])])

    def delete_messages(i: int) -> None:
        entries = [{"Id": str(j), "ReceiptHandle": h} for j, h in enumerate(handles[i])]
        sqs.delete_message_batch(QueueUrl=predictions_url, Entries=entries)

    def delete_objects(i: int) -> None:
        keys = [{"Key": f"b/{j:05d}.jpeg"} for j in range(i * 10 % n, i * 10 % n + 10)]
        s3.delete_objects(Bucket=inbound, Delete={"Objects": keys, "Quiet": True})

    # The uploads' notifications are not consumed here: they only make the queue as long as a burst's.
    measure("PutObject (with the S3 -> SQS notification)", put, n)
    measure("GetObject", get, n)
    measure("CopyObject (If-None-Match, copy-source-if-match)", copy, n)
    measure("GetObject of an absent decision marker (404)", marker, n)
    measure("HeadObject", lambda i: s3.head_object(Bucket=inbound, Key=f"b/{i:05d}.jpeg") and None, n)
    # n batches of 10 make a backlog of 10 n messages, which the receives then work through.
    sqs_n = max(n // 3, 10)
    measure("SendMessageBatch (10)", send, sqs_n)
    measure("ReceiveMessage (10)", receive, sqs_n)
    measure("DeleteMessageBatch (10)", delete_messages, sqs_n)
    measure("DeleteObjects (10)", delete_objects, max(n // 10, 10))
    sqs.purge_queue(QueueUrl=uploads_url)
    return out
