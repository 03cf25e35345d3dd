"""Container health checks for docker-compose (the images carry no curl).

    python healthcheck.py http URL        healthy when URL answers 2xx
    python healthcheck.py queue SERVICE   healthy when the predict/router worker's settings reach its queue

The queue check builds the same settings object the worker reads at start-up, so a worker that lost its
endpoint or credentials turns unhealthy instead of polling into the void.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def check_http(url: str, timeout_s: float = 3.0) -> str | None:
    """None when `url` answers 2xx, else why not."""
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url!r}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - scheme checked above
            status = int(response.status)
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def check_queue(service: str) -> str | None:
    """None when the service's configured queue resolves with its configured endpoint and credentials."""
    from partcheck.aws import client
    from partcheck.errors import PartcheckError
    from partcheck.storage import Queue

    if service == "predict":
        from services.predict.settings import PredictSettings

        predict = PredictSettings()
        aws, names = predict.aws(), [predict.uploads_queue, predict.predictions_queue]
    elif service == "router":
        from services.router.settings import RouterSettings

        router = RouterSettings()
        aws, names = router.aws(), [router.predictions_queue]
    else:
        return f"unknown service {service!r}: predict or router"
    sqs = client(
        "sqs", aws.model_copy(update={"max_attempts": 1, "connect_timeout_s": 2.0, "read_timeout_s": 3.0})
    )
    try:
        for name in names:
            Queue.by_name(sqs, name)
    except PartcheckError as exc:
        return str(exc)
    return None


def main(argv: list[str]) -> int:
    """Run one check; exit status 0 means healthy."""
    if len(argv) != 2 or argv[0] not in {"http", "queue"}:
        print("usage: healthcheck.py http URL | queue predict|router", file=sys.stderr)
        return 2
    problem = check_http(argv[1]) if argv[0] == "http" else check_queue(argv[1])
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
