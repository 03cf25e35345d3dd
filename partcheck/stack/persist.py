"""Persistence for the in-memory moto server: snapshot buckets and queues to disk, restore them at start.

moto keeps everything in memory, so the local stack would lose every sorted image, decision and audit
record on Ctrl-C. A snapshot stores object bodies once each (named by ETag and size, so repeated saves
only write new objects, and bodies no object names any more are deleted) plus a manifest of every
bucket and every queue, in whichever region each lives; saving runs every few seconds and at shutdown,
restoring runs before any worker starts. It reads moto's backends directly because SQS offers no way to
read a queue without receiving (and so hiding) its messages.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from partcheck.aws import AwsConfig, aws_errors, client
from partcheck.stack.bootstrap import ensure_bucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from partcheck.stack.keepalive import Changes

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
PROGRESS_SECONDS = 1.0  # how often a long restore says how far it got (`partcheck up` waits on that)
SLOW_SNAPSHOT_WARN_EVERY_S = 3600.0  # a snapshot over half its interval is logged at most this often
RETRY_FAILED_SAVE_S = 1.0  # a failed durable snapshot is tried again after this long; its requests wait
FAILING_LOG_EVERY_S = 60.0  # while snapshots keep failing, one line this often
# A key object found looking the same this long after it was first seen is past the request that made it
# (moto sets a copy's metadata just after creating the key) and is no longer compared field by field.
SETTLED_S = 10.0
SLOW_COMMIT_S = 0.25  # a durable snapshot over this long is logged (at most once an hour): uploads wait on it


@dataclass(frozen=True)
class _Entry:
    """One object as the last manifest holds it, and the moto key object it was read from."""

    key: Any
    looks: tuple[Any, ...]  # ETag, size, LastModified, metadata: what the entry was built from
    json: str
    blob: str
    since: float  # monotonic time it was first seen looking like this
    # Seen looking the same again SETTLED_S or more after `since`: past the request that made it.
    settled: bool = False


class Snapshotter:
    """Saves and restores the moto server's S3 and SQS state under `state_dir`."""

    def __init__(self, state_dir: Path, region: str) -> None:
        self.dir = state_dir
        self.blobs = state_dir / "blobs"
        self.manifest_path = state_dir / "manifest.json"
        self.region = region
        self._known_blobs: set[str] = set()
        self._ready = False  # the blobs folder exists and `_known_blobs` lists it
        self._wrote_blobs = False  # bodies written whose names the blobs folder has not fsynced yet
        # bucket -> key -> its entry in the last manifest. Saving after every round of requests
        # (SnapshotMode.COMMIT) re-serialised every object each time, under the interpreter lock the
        # requests need: at 1,500 objects 16 ms a save, and the pipeline bench's bursts fell from ~125 to
        # ~50 images/s. An object is re-read only when moto holds another key object for it, or while
        # the same one may still be changing.
        self._entries: dict[str, dict[str, _Entry]] = {}
        # bucket -> (moto's notification object, its configuration as S3 returns it); moto replaces the
        # object whenever the configuration is set, so an unchanged one need not be asked for again.
        self._notifications: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # -- save ------------------------------------------------------------------------------------
    def save(self, s3: S3Client) -> dict[str, int]:
        """Write a consistent-enough snapshot: new object bodies first, then the manifest atomically."""
        from moto.s3.models import s3_backends
        from moto.sqs.models import sqs_backends

        with self._lock:
            if not self._ready:
                self.blobs.mkdir(parents=True, exist_ok=True)
                self._known_blobs = self._list_blobs()
                self._ready = True
            buckets: list[str] = []
            referenced: set[str] = set()
            entries: dict[str, dict[str, _Entry]] = {}
            n_objects = 0
            now = time.monotonic()
            backend = s3_backends[ACCOUNT]["global"]
            for name, bucket in list(backend.buckets.items()):
                objects = []
                before = self._entries.get(name, {})
                kept = entries[name] = {}
                # One C-level copy of moto's key -> versions dict: requests may change it meanwhile.
                for key_name, versions in list(dict.items(bucket.keys)):
                    key = versions[-1] if versions else None
                    cached = before.get(key_name)
                    if cached is not None and cached.settled and cached.key is key:
                        # The same key object, settled: nothing in it changes any more.
                        kept[key_name] = cached
                        referenced.add(cached.blob)
                        objects.append(cached.json)
                        continue
                    if key is None or getattr(key, "is_delete_marker", False):
                        continue
                    # Read as it is now: a copy sets the metadata just after creating the key, so a key
                    # seen mid-request is compared again until it has looked the same for SETTLED_S.
                    # moto's LowercaseDict keeps a plain dict: its items are a C-level copy, 10x cheaper.
                    meta = getattr(key.metadata, "store", key.metadata)
                    looks = (key.etag, key.size, key.last_modified, tuple(meta.items()))
                    if cached is None or cached.key is not key or cached.looks != looks:
                        cached = self._entry(key_name, key, looks, now)
                    elif now - cached.since >= SETTLED_S:
                        # Compared, not assumed: a save long after one that caught the key mid-request
                        # (a slow interval, failing saves) still finds the metadata set since.
                        cached = replace(cached, settled=True)
                    kept[key_name] = cached
                    referenced.add(cached.blob)
                    objects.append(cached.json)
                n_objects += len(objects)
                head = json.dumps(
                    {
                        "name": name,
                        # A bucket's notifications may only name queues of its own region, so it must come
                        # back in that region, whatever region this server defaults to.
                        "region": bucket.region_name,
                        "notification": self._notification(s3, name, bucket),
                    }
                )
                buckets.append(f'{head[:-1]}, "objects": [{", ".join(objects)}]}}')
            self._entries = entries
            queues = []
            n_messages = 0
            # Every region's queues: the stack's region need not be the one this server defaults to.
            for region, sqs_backend in list(sqs_backends[ACCOUNT].items()):
                for queue in list(sqs_backend.queues.values()):
                    messages = [
                        {"body": m.body, "attributes": _message_attributes(m)} for m in list(queue._messages)
                    ]
                    n_messages += len(messages)
                    attrs = {
                        k: v if isinstance(v, str) else json.dumps(v)
                        for k, v in queue.attributes.items()
                        if k in _QUEUE_ATTRIBUTES and v not in (None, "")
                    }
                    queues.append(
                        {"name": queue.name, "region": region, "attributes": attrs, "messages": messages}
                    )
            head = json.dumps({"saved_at": datetime.now().isoformat(), "region": self.region})
            manifest = f'{head[:-1]}, "buckets": [{", ".join(buckets)}], "queues": {json.dumps(queues)}}}'
            if self._wrote_blobs:
                _fsync_dir(self.blobs)  # their names too, before a manifest names them
                # Only now: blobs written by a save that failed afterwards still need it.
                self._wrote_blobs = False
            _write_atomic(self.manifest_path, manifest.encode())
            _fsync_dir(self.dir)  # the rename: until then a power cut could bring the old manifest back
            # Only after the new manifest is on disk: until then the previous one may still name them.
            self._prune(self._known_blobs - referenced)
            return {"objects": n_objects, "messages": n_messages}

    def _entry(self, key_name: str, key: Any, looks: tuple[Any, ...], now: float) -> _Entry:
        """An object's manifest entry, writing its body if no blob holds it yet."""
        etag, size, last_modified, metadata = looks
        blob = f"{etag.strip(chr(34)).replace('-', '_')}.{size}"
        if blob not in self._known_blobs:
            _write_atomic(self.blobs / blob, key.value)
            self._known_blobs.add(blob)
            self._wrote_blobs = True
        raw = dict(metadata)
        entry = {
            "key": key_name,
            "blob": blob,
            "metadata": {k[len(_META) :]: v for k, v in raw.items() if k.startswith(_META)},
            "content_type": raw.get("content-type"),
            "last_modified": last_modified.isoformat(),
        }
        return _Entry(key, looks, json.dumps(entry), blob, now)

    def _list_blobs(self) -> set[str]:
        names = set()
        for path in self.blobs.iterdir():
            if path.name.startswith("."):
                # A temporary file a killed save left behind; only this process writes here.
                path.unlink(missing_ok=True)
            else:
                names.add(path.name)
        return names

    def _prune(self, unreferenced: set[str]) -> None:
        """Delete bodies no object names any more, so the snapshot does not grow with every routed image."""
        for blob in unreferenced:
            (self.blobs / blob).unlink(missing_ok=True)
        self._known_blobs -= unreferenced

    def _notification(self, s3: S3Client, name: str, bucket: Any) -> dict[str, Any]:
        """The bucket's notification configuration as S3 returns it, asked for only when it changed."""
        current = bucket.notification_configuration
        cached = self._notifications.get(name)
        if cached is not None and cached[0] is current:
            return cached[1]
        with aws_errors(f"notification of {name}"):
            config = s3.get_bucket_notification_configuration(Bucket=name)
        found = {k: v for k, v in config.items() if k != "ResponseMetadata"}
        # Keeping the object referenced keeps its identity from being reused by a later one.
        self._notifications[name] = (current, found)
        return found

    # -- restore ---------------------------------------------------------------------------------
    def restore(self, s3: S3Client, sqs: SQSClient) -> dict[str, int]:
        """Recreate buckets, objects (with their original LastModified), queues and messages."""
        from moto.s3.models import s3_backends

        if not self.manifest_path.exists():
            return {"objects": 0, "messages": 0}
        manifest = json.loads(self.manifest_path.read_text())
        default_region = manifest.get("region") or self.region
        clients = _RegionClients(s3, sqs)
        backend = s3_backends[ACCOUNT]["global"]
        total = sum(len(b["objects"]) for b in manifest["buckets"])
        n_messages = sum(len(q["messages"]) for q in manifest["queues"])
        log.info("restoring %d objects and %d messages from %s", total, n_messages, self.dir)
        progress = _Progress(total + n_messages)
        waiting = {
            named for q in manifest["queues"] for m in q["messages"] for named in _objects_named(m["body"])
        }
        lost_events: list[tuple[S3Client, str, dict[str, Any]]] = []
        for bucket in manifest["buckets"]:
            region = bucket.get("region") or _notification_region(bucket) or default_region
            bucket_s3 = clients.s3(region)
            ensure_bucket(bucket_s3, bucket["name"], region)
            notifies = bool((bucket.get("notification") or {}).get("QueueConfigurations"))
            for obj in bucket["objects"]:
                if notifies and (bucket["name"], obj["key"]) not in waiting:
                    lost_events.append((bucket_s3, bucket["name"], obj))
                    continue
                self._put(bucket_s3, backend, bucket["name"], obj)
                progress.step()
        self._restore_queues(clients, manifest["queues"], default_region, progress)
        # Notifications last, so restoring objects fires no events.
        for bucket in manifest["buckets"]:
            if bucket.get("notification"):
                region = bucket.get("region") or _notification_region(bucket) or default_region
                with aws_errors(f"restore notification of {bucket['name']}"):
                    clients.s3(region).put_bucket_notification_configuration(
                        Bucket=bucket["name"], NotificationConfiguration=bucket["notification"]
                    )
        if lost_events:
            # An object of a notifying bucket with no message left anywhere (not even in a dead-letter
            # queue) would wait there forever: a snapshot taken while the router moved it kept the object
            # but not the message. Putting it after the notifications makes S3 send its event again;
            # predict and router are idempotent, so an event that was not lost after all costs a re-run.
            log.warning(
                "%d objects had no message waiting; sending their ObjectCreated event again", len(lost_events)
            )
            for bucket_s3, name, obj in lost_events:
                self._put(bucket_s3, backend, name, obj)
                progress.step()
        return {"objects": total, "messages": n_messages}

    def _put(self, s3: S3Client, backend: Any, bucket: str, obj: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": obj["key"],
            "Body": (self.blobs / obj["blob"]).read_bytes(),
            "Metadata": obj["metadata"],
        }
        if obj.get("content_type"):
            kwargs["ContentType"] = obj["content_type"]
        with aws_errors(f"restore bucket {bucket}"):
            s3.put_object(**kwargs)
        # Keep "oldest first" true across restarts.
        backend.buckets[bucket].keys[obj["key"]].last_modified = datetime.fromisoformat(obj["last_modified"])

    @staticmethod
    def _restore_queues(
        clients: _RegionClients, queues: list[dict[str, Any]], default_region: str, progress: _Progress
    ) -> None:
        urls = {}
        with aws_errors("restore queues"):
            # Dead-letter queues must exist before a redrive policy can name them.
            for i, q in enumerate(queues):
                attrs = {k: v for k, v in q["attributes"].items() if k != "RedrivePolicy"}
                sqs = clients.sqs(q.get("region") or default_region)
                urls[i] = sqs.create_queue(QueueName=q["name"], Attributes=attrs)["QueueUrl"]
            for i, q in enumerate(queues):
                sqs = clients.sqs(q.get("region") or default_region)
                if "RedrivePolicy" in q["attributes"]:
                    sqs.set_queue_attributes(
                        QueueUrl=urls[i], Attributes={"RedrivePolicy": q["attributes"]["RedrivePolicy"]}
                    )
                for m in q["messages"]:
                    kwargs: dict[str, Any] = {"QueueUrl": urls[i], "MessageBody": m["body"]}
                    if m["attributes"]:
                        kwargs["MessageAttributes"] = m["attributes"]
                    sqs.send_message(**kwargs)
                    progress.step()


class _RegionClients:
    """Clients of one endpoint per region: S3 and SQS accept a region's buckets and queues only there."""

    def __init__(self, s3: S3Client, sqs: SQSClient) -> None:
        self._endpoint = s3.meta.endpoint_url
        self._s3: dict[str, S3Client] = {s3.meta.region_name: s3}
        self._sqs: dict[str, SQSClient] = {sqs.meta.region_name: sqs}

    def s3(self, region: str) -> S3Client:
        if region not in self._s3:
            self._s3[region] = client("s3", AwsConfig(endpoint_url=self._endpoint, region=region))
        return self._s3[region]

    def sqs(self, region: str) -> SQSClient:
        if region not in self._sqs:
            self._sqs[region] = client("sqs", AwsConfig(endpoint_url=self._endpoint, region=region))
        return self._sqs[region]


class _Progress:
    """Logs how far a restore got every PROGRESS_SECONDS, so a waiting `partcheck up` sees it advance."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self._next = time.monotonic() + PROGRESS_SECONDS

    def step(self) -> None:
        self.done += 1
        if time.monotonic() >= self._next:
            log.info("restoring: %d of %d objects and messages", self.done, self.total)
            self._next = time.monotonic() + PROGRESS_SECONDS


def _notification_region(bucket: dict[str, Any]) -> str | None:
    """The region of the first queue a bucket notifies: where a manifest without bucket regions had it."""
    for config in (bucket.get("notification") or {}).get("QueueConfigurations", []):
        return str(config["QueueArn"].split(":")[3])
    return None


def _objects_named(body: str) -> Iterator[tuple[str, str]]:
    """(bucket, key) of the objects a message is about: S3 event records, or a prediction message."""
    try:
        doc = json.loads(body)
    except ValueError:
        return
    if not isinstance(doc, dict):
        return
    records = doc.get("Records")
    for record in records if isinstance(records, list) else []:
        try:
            yield record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"])
        except (KeyError, TypeError):
            continue
    if isinstance(doc.get("bucket"), str) and isinstance(doc.get("key"), str):
        yield doc["bucket"], doc["key"]


def _message_attributes(message: Any) -> dict[str, Any]:
    out = {}
    for name, attr in message.message_attributes.items():
        data_type = attr.get("DataType") or "String"
        value = attr.get("StringValue")
        if value is not None:
            out[name] = {"DataType": data_type, "StringValue": value}
    return out


def _fsync_dir(path: Path) -> None:
    """Make the names created or replaced in a folder durable (POSIX; elsewhere a no-op)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def save_periodically(
    snapshotter: Snapshotter,
    s3: S3Client,
    stop: threading.Event,
    every_s: float,
    changes: Changes | None = None,
) -> None:
    """Save every `every_s` seconds until `stop` is set (the final save is the caller's); with `changes`,
    only when a request may have changed something since the last save began."""
    # The state was just restored from (or is as empty as) what is on disk: nothing to save yet.
    saved = changes.count if changes is not None else None
    warned_at = -SLOW_SNAPSHOT_WARN_EVERY_S
    while not stop.wait(every_s):
        seen = changes.count if changes is not None else None
        if changes is not None and seen == saved:
            continue  # idle: at 50,000 settled objects a save costs ~75 ms (bench local_capacity)
        try:
            started = time.perf_counter()
            counts = snapshotter.save(s3)
            saved = seen
            if changes is not None:
                changes.snapshot_succeeded()
                changes.saved(seen if seen is not None else 0)
            took = time.perf_counter() - started
            log.debug("snapshot in %.0f ms", took * 1000)
            if took > every_s / 2 and started - warned_at >= SLOW_SNAPSHOT_WARN_EVERY_S:
                # The snapshot grows with every object kept and nothing expires them: say so before it
                # fills the interval, while there is time to move the line to the AWS stack.
                warned_at = started
                log.warning(
                    "snapshot of %d objects took %.1f s of its %.1f s interval: the local AWS keeps every "
                    "photo in memory and rewrites its manifest each time (deploy/README.md, docker-compose "
                    "on a factory server)",
                    counts["objects"],
                    took,
                    every_s,
                )
        except Exception as exc:  # a failed snapshot must not stop the server; the next one retries
            if changes is not None:
                changes.snapshot_failed(exc)
            log.exception("snapshot failed")


def save_durably(
    snapshotter: Snapshotter, s3: S3Client, stop: threading.Event, every_s: float, changes: Changes
) -> None:
    """Save as soon as a request waits for its change to be stored, and release those each snapshot
    holds; changes nobody waits for are saved with them, or after `every_s` seconds.

    Group commit: the requests that arrive while one snapshot is written are all held by the next, so a
    busy server writes one snapshot per round of requests, not one per request, and an idle one none.
    """
    saved = changes.count  # the state was just restored from (or is as empty as) what is on disk
    warned_at = -SLOW_SNAPSHOT_WARN_EVERY_S
    failures, failing_logged = 0, 0.0
    while not stop.is_set():
        # Read before the save starts: every request counted so far has finished changing the state.
        seen = changes.wait_for_change(saved, timeout=every_s)
        if seen is None:
            continue
        try:
            started = time.perf_counter()
            counts = snapshotter.save(s3)
        except Exception as exc:  # the waiting requests stay unanswered (never falsely answered); try again
            changes.snapshot_failed(exc)
            failures += 1
            if failures == 1:
                log.exception("snapshot failed; uploads and other changes wait unanswered until one succeeds")
                failing_logged = time.monotonic()
            elif time.monotonic() - failing_logged >= FAILING_LOG_EVERY_S:
                # A full disk fails every second: one line a minute says it still does, not a traceback each.
                log.error("snapshots still failing (%d attempts); changes wait unanswered", failures)
                failing_logged = time.monotonic()
            stop.wait(RETRY_FAILED_SAVE_S)
            continue
        if failures:
            log.warning("snapshot succeeded after %d failed attempts; waiting changes answered", failures)
            failures = 0
        changes.snapshot_succeeded()
        changes.saved(seen)
        saved = seen
        took = time.perf_counter() - started
        if took > SLOW_COMMIT_S and started - warned_at >= SLOW_SNAPSHOT_WARN_EVERY_S:
            warned_at = started
            log.warning(
                "snapshot of %d objects took %.1f s, and every upload, move and decision waits for one: "
                "the local AWS keeps every photo in memory and rewrites its manifest each time "
                "(deploy/README.md, docker-compose on a factory server)",
                counts["objects"],
                took,
            )
