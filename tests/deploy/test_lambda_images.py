"""The Lambda images' own command (`python -m awslambdaric <handler>`, from the Dockerfiles' CMD) served by
a local stand-in for the Lambda Runtime API, against moto: the same process Lambda starts in the image."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from partcheck.aws import client
from partcheck.messages import PredictionMessage
from partcheck.stack.bootstrap import bootstrap
from partcheck.stack.config import StackSettings
from partcheck.storage import ObjectStore, Queue
from tests.conftest import EVENTS
from tests.deploy.test_compose import dockerfile_env
from tests.fakes import stored_prediction

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
API = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:test"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The runtime is terminated mid-poll at the end of a test; its reset connection is expected."""


@dataclass
class RuntimeApi:
    """The part of the Lambda Runtime API awslambdaric uses: next invocation, response, errors."""

    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    results: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    server: _QuietServer | None = None

    def start(self) -> str:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{API}/invocation/next":
                    self._reply(404)
                    return
                event = api.events.get()  # blocks like the real API until there is work
                self._reply(
                    200,
                    json.dumps(event).encode(),
                    {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": str(uuid.uuid4()),
                        "Lambda-Runtime-Deadline-Ms": str(int((time.time() + 60) * 1000)),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                    },
                )

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                kind = "response" if self.path.endswith("/response") else "error"
                api.results.put((kind, json.loads(body or b"null")))
                self._reply(202, b"{}", {"Content-Type": "application/json"})

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()


def image_command(service: str) -> list[str]:
    """The CMD of a service's Dockerfile, with the image's venv python replaced by this one."""
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("CMD ")]
    argv: list[str] = json.loads(line[4:])
    assert argv[:3] == ["/opt/venv/bin/python", "-m", "awslambdaric"]
    return [sys.executable, *argv[1:]]


@pytest.fixture
def runtime_api() -> Iterator[RuntimeApi]:
    api = RuntimeApi()
    yield api
    api.stop()


def invoke(api: RuntimeApi, service: str, env: dict[str, str], event: dict[str, Any], tmp: Path) -> Any:
    """Start the image's command as Lambda would, hand it one event, return its answer."""
    address = api.start()
    api.events.put(event)
    log = tmp / f"{service}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            image_command(service),
            env={**env, "AWS_LAMBDA_RUNTIME_API": address},
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            kind, body = api.results.get(timeout=60)
        except queue.Empty:
            raise AssertionError(f"no answer from the {service} runtime:\n{log.read_text()}") from None
        finally:
            proc.terminate()
            proc.wait(10)
    assert kind == "response", f"{service} reported an error: {body}\n{log.read_text()}"
    return body


def _env(moto: str, prefix: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    import os

    return {
        **os.environ,
        f"PARTCHECK_{prefix}_ENDPOINT_URL": moto,
        f"PARTCHECK_{prefix}_REGION": "eu-west-1",
        **(extra or {}),
    }


def test_router_image_command_routes_an_sqs_batch(
    moto: str, runtime_api: RuntimeApi, tmp_path: Path, sample_images: dict[str, list[Path]]
) -> None:
    settings = StackSettings(endpoint_url=moto)
    s3, sqs = client("s3", settings.aws()), client("sqs", settings.aws())
    bootstrap(s3, sqs, settings)
    s3.put_bucket_notification_configuration(Bucket=settings.inbound_bucket, NotificationConfiguration={})
    store = ObjectStore(s3)
    image = sample_images["defect"][0].read_bytes()
    message = stored_prediction(store, settings.inbound_bucket, "line-1/cam-1/x.jpeg", image, 0.97)
    event = json.loads((EVENTS / "sqs_batch_predictions.json").read_text())
    event["Records"] = event["Records"][:1]
    event["Records"][0]["body"] = message.to_json()

    answer = invoke(runtime_api, "router", _env(moto, "ROUTER"), event, tmp_path)

    assert answer == {"batchItemFailures": []}
    assert [o.key for o in store.list(settings.prediction_bucket)] == ["defect/line-1/cam-1/x.jpeg"]
    assert store.head(settings.inbound_bucket, "line-1/cam-1/x.jpeg") is None


def test_predict_image_command_classifies_an_s3_notification(
    moto: str, runtime_api: RuntimeApi, tmp_path: Path, sample_images: dict[str, list[Path]]
) -> None:
    settings = StackSettings(endpoint_url=moto)
    s3, sqs = client("s3", settings.aws()), client("sqs", settings.aws())
    bootstrap(s3, sqs, settings)
    s3.put_bucket_notification_configuration(Bucket=settings.inbound_bucket, NotificationConfiguration={})
    image = sample_images["ok"][0].read_bytes()
    key = "line-3/cam-1/2026-11-25/img 0001.jpeg"
    etag = ObjectStore(s3).put(settings.inbound_bucket, key, image)
    event = json.loads((EVENTS / "sqs_s3_notification.json").read_text())
    notification = json.loads(event["Records"][0]["body"])
    notification["Records"][0]["s3"]["object"].update(
        key="line-3/cam-1/2026-11-25/img+0001.jpeg", size=len(image), eTag=etag
    )
    event["Records"][0]["body"] = json.dumps(notification)
    # The model path the image sets, pointed at the repository's models/ (the image copies that folder).
    model = dockerfile_env(ROOT / "services" / "predict" / "Dockerfile")["PARTCHECK_PREDICT_MODEL_PATH"]
    env = _env(
        moto,
        "PREDICT",
        {
            "PARTCHECK_PREDICT_MODEL_PATH": str(
                ROOT / "models" / Path(model).relative_to("/opt/partcheck/models")
            )
        },
    )

    answer = invoke(runtime_api, "predict", env, event, tmp_path)

    assert answer == {"batchItemFailures": []}
    predictions = Queue.by_name(sqs, settings.predictions_queue).receive(10, wait_s=1)
    (sent,) = [PredictionMessage.from_json(m.body) for m in predictions]
    assert sent.key == key
    assert sent.outcome == "classified"
    assert sent.prediction is not None
