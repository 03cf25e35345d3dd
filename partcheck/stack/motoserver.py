"""`partcheck moto`: the local AWS (moto in server mode) with its state kept on disk."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from partcheck.aws import AwsConfig, client
from partcheck.stack import SnapshotMode, motopatch
from partcheck.stack.config import free_port
from partcheck.stack.persist import Snapshotter, save_durably, save_periodically

log = logging.getLogger(__name__)


def serve_moto(
    host: str,
    port: int,
    state_dir: Path | None,
    region: str,
    snapshot_seconds: float,
    stop: threading.Event | None = None,
    snapshot_mode: SnapshotMode = SnapshotMode.COMMIT,
) -> None:
    """Run moto until SIGTERM/SIGINT (or `stop`), restoring state first and saving it last.

    In `SnapshotMode.COMMIT` a request that brings data in (an object written or copied) is answered only
    once a snapshot holds it; in `INTERVAL` the state is saved every `snapshot_seconds` and requests are
    answered at once.
    """
    from partcheck.stack.keepalive import Changes, MotoServer

    motopatch.apply()
    stop = stop or _signal_event()
    snapshotter = Snapshotter(state_dir, region) if state_dir else None
    if snapshotter:
        # Restore through a private server first: moto's state is per process, so clients that connect
        # to the public port never see a half-restored stack.
        staging_port = free_port()
        staging = MotoServer("127.0.0.1", staging_port)
        staging.start()
        aws = AwsConfig(endpoint_url=f"http://127.0.0.1:{staging_port}", region=region)
        restored = snapshotter.restore(client("s3", aws), client("sqs", aws))
        staging.stop()
        log.info("restored %(objects)d objects and %(messages)d messages", restored)
    changes = Changes(
        durable=snapshotter is not None and snapshot_mode == SnapshotMode.COMMIT,
        persisted=snapshotter is not None,
    )
    server = MotoServer(host, port, changes)
    server.start()
    endpoint = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
    s3 = client("s3", AwsConfig(endpoint_url=endpoint, region=region))
    if snapshotter:
        saver = threading.Thread(
            target=save_durably if changes.durable else save_periodically,
            args=(snapshotter, s3, stop, snapshot_seconds, changes),
            daemon=True,
            name="snapshot",
        )
        saver.start()
    print(f"moto listening on {endpoint}", flush=True)
    stop.wait()
    try:
        if snapshotter:
            seen = changes.count
            saved = snapshotter.save(s3)
            changes.saved(seen)
            log.info("saved %(objects)d objects and %(messages)d messages", saved)
    finally:
        # Requests after the last snapshot get an error, not an answer that says they are stored.
        changes.close()
        server.stop()


def _signal_event() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
