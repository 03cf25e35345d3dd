"""Persistence for the in-memory moto server: snapshot buckets and queues to disk, restore them at start.

moto keeps everything in memory, so the local stack would lose every sorted image, decision and audit
record on Ctrl-C. A snapshot stores object bodies once each (named by ETag and size, so repeated saves
only write new objects) plus a manifest; saving runs every few seconds and at shutdown, restoring runs
before any worker starts. It reads moto's backends directly because SQS offers no way to read a queue
without receiving (and so hiding) its messages.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partcheck.aws import aws_errors
from partcheck.stack.bootstrap import ensure_bucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

ACCOUNT = "123456789012"  # moto's default account
_META = "x-amz-meta-"  # moto keeps user metadata as raw header names
_QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "DelaySeconds",
    "Policy",
    "RedrivePolicy",
)


class Snapshotter:
    """Saves and restores the moto server's S3 and SQS state under `state_dir`."""

    def __init__(self, state_dir: Path, region: str) -> None:
        self.dir = state_dir
        self.blobs = state_dir / "blobs"
        self.manifest_path = state_dir / "manifest.json"
        self.region = region
        self._known_blobs: set[str] = set()
        self._lock = threading.Lock()

    # -- save ------------------------------------------------------------------------------------
    def save(self, s3: S3Client) -> dict[str, int]:
        """Write a consistent-enough snapshot: new object bodies first, then the manifest atomically."""
        from moto.s3.models import s3_backends
        from moto.sqs.models import sqs_backends

        with self._lock:
            self.blobs.mkdir(parents=True, exist_ok=True)
            if not self._known_blobs:
                self._known_blobs = {p.name for p in self.blobs.iterdir()}
            buckets: list[dict[str, Any]] = []
            n_objects = 0
            backend = s3_backends[ACCOUNT]["global"]
            for name, bucket in list(backend.buckets.items()):
                objects = []
                for key_name in list(bucket.keys.keys()):
                    try:
                        key = bucket.keys[key_name]
                    except KeyError:
                        continue  # deleted by a request while this pass runs; the next pass sees it gone
                    if key is None or getattr(key, "is_delete_marker", False):
                        continue
                    blob = f"{key.etag.strip(chr(34)).replace('-', '_')}.{key.size}"
                    if blob not in self._known_blobs:
                        _write_atomic(self.blobs / blob, key.value)
                        self._known_blobs.add(blob)
                    raw = dict(key.metadata)
                    objects.append(
                        {
                            "key": key_name,
                            "blob": blob,
                            "metadata": {k[len(_META) :]: v for k, v in raw.items() if k.startswith(_META)},
                            "content_type": raw.get("content-type"),
                            "last_modified": key.last_modified.isoformat(),
                        }
                    )
                n_objects += len(objects)
                buckets.append(
                    {"name": name, "objects": objects, "notification": self._notification(s3, name)}
                )
            queues = []
            n_messages = 0
            for queue in list(sqs_backends[ACCOUNT][self.region].queues.values()):
                messages = [
                    {"body": m.body, "attributes": _message_attributes(m)} for m in list(queue._messages)
                ]
                n_messages += len(messages)
                attrs = {
                    k: v if isinstance(v, str) else json.dumps(v)
                    for k, v in queue.attributes.items()
                    if k in _QUEUE_ATTRIBUTES and v not in (None, "")
                }
                queues.append({"name": queue.name, "attributes": attrs, "messages": messages})
            manifest = {
                "saved_at": datetime.now().isoformat(),
                "region": self.region,
                "buckets": buckets,
                "queues": queues,
            }
            _write_atomic(self.manifest_path, json.dumps(manifest).encode())
            return {"objects": n_objects, "messages": n_messages}

    @staticmethod
    def _notification(s3: S3Client, bucket: str) -> dict[str, Any]:
        with aws_errors(f"notification of {bucket}"):
            config = s3.get_bucket_notification_configuration(Bucket=bucket)
        return {k: v for k, v in config.items() if k != "ResponseMetadata"}

    # -- restore ---------------------------------------------------------------------------------
    def restore(self, s3: S3Client, sqs: SQSClient) -> dict[str, int]:
        """Recreate buckets, objects (with their original LastModified), queues and messages."""
        from moto.s3.models import s3_backends

        if not self.manifest_path.exists():
            return {"objects": 0, "messages": 0}
        manifest = json.loads(self.manifest_path.read_text())
        backend = s3_backends[ACCOUNT]["global"]
        n_objects = n_messages = 0
        for bucket in manifest["buckets"]:
            ensure_bucket(s3, bucket["name"], self.region)
            with aws_errors(f"restore bucket {bucket['name']}"):
                for obj in bucket["objects"]:
                    body = (self.blobs / obj["blob"]).read_bytes()
                    kwargs: dict[str, Any] = {
                        "Bucket": bucket["name"],
                        "Key": obj["key"],
                        "Body": body,
                        "Metadata": obj["metadata"],
                    }
                    if obj.get("content_type"):
                        kwargs["ContentType"] = obj["content_type"]
                    s3.put_object(**kwargs)
                    # Keep "oldest first" true across restarts.
                    backend.buckets[bucket["name"]].keys[obj["key"]].last_modified = datetime.fromisoformat(
                        obj["last_modified"]
                    )
                    n_objects += 1
        self._restore_queues(sqs, manifest["queues"])
        n_messages = sum(len(q["messages"]) for q in manifest["queues"])
        # Notifications last, so restoring objects fires no events.
        for bucket in manifest["buckets"]:
            if bucket.get("notification"):
                with aws_errors(f"restore notification of {bucket['name']}"):
                    s3.put_bucket_notification_configuration(
                        Bucket=bucket["name"], NotificationConfiguration=bucket["notification"]
                    )
        return {"objects": n_objects, "messages": n_messages}

    @staticmethod
    def _restore_queues(sqs: SQSClient, queues: list[dict[str, Any]]) -> None:
        urls = {}
        with aws_errors("restore queues"):
            # Dead-letter queues must exist before a redrive policy can name them.
            for q in queues:
                attrs = {k: v for k, v in q["attributes"].items() if k != "RedrivePolicy"}
                urls[q["name"]] = sqs.create_queue(QueueName=q["name"], Attributes=attrs)["QueueUrl"]
            for q in queues:
                if "RedrivePolicy" in q["attributes"]:
                    sqs.set_queue_attributes(
                        QueueUrl=urls[q["name"]],
                        Attributes={"RedrivePolicy": q["attributes"]["RedrivePolicy"]},
                    )
                for m in q["messages"]:
                    kwargs: dict[str, Any] = {"QueueUrl": urls[q["name"]], "MessageBody": m["body"]}
                    if m["attributes"]:
                        kwargs["MessageAttributes"] = m["attributes"]
                    sqs.send_message(**kwargs)


def _message_attributes(message: Any) -> dict[str, Any]:
    out = {}
    for name, attr in message.message_attributes.items():
        data_type = attr.get("DataType") or "String"
        value = attr.get("StringValue")
        if value is not None:
            out[name] = {"DataType": data_type, "StringValue": value}
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def save_periodically(snapshotter: Snapshotter, s3: S3Client, stop: threading.Event, every_s: float) -> None:
    """Save every `every_s` seconds until `stop` is set (the final save is the caller's)."""
    while not stop.wait(every_s):
        try:
            started = time.perf_counter()
            snapshotter.save(s3)
            log.debug("snapshot in %.0f ms", (time.perf_counter() - started) * 1000)
        except Exception:  # a failed snapshot must not stop the server; the next one retries
            log.exception("snapshot failed")
