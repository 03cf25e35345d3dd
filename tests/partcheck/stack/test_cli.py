"""What `partcheck up` runs and prints, and the state folder `status` and `serve` read."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from partcheck.aws import client
from partcheck.cli import app
from partcheck.errors import InvalidInput
from partcheck.stack import up
from partcheck.stack.bootstrap import bootstrap
from partcheck.stack.config import StackSettings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """plan() and status point the process at moto's fake credentials; undo that after the test."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)


def _flags(argv: list[str]) -> dict[str, str]:
    return {a: b for a, b in itertools.pairwise(argv) if a.startswith("--")}


@pytest.mark.unit
def test_moto_gets_the_region_and_snapshot_interval(tmp_path, local_env):
    settings = StackSettings(state_dir=tmp_path, region="eu-central-1", snapshot_seconds=7.5)
    moto = up.plan(settings, None)[0]
    assert moto.name == "moto"
    flags = _flags(moto.argv)
    assert flags["--region"] == "eu-central-1"
    assert float(flags["--snapshot-seconds"]) == 7.5
    # compose runs the same command: every option it gives moto, `up` gives too.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["moto"]["command"]
    assert set(_flags(compose)) <= set(flags)


@pytest.mark.unit
def test_up_names_its_state_folder_in_the_hints(tmp_path, monkeypatch):
    state = tmp_path / "elsewhere"
    monkeypatch.setattr(up, "console", Console(width=1000, record=True))
    up._print_endpoints(StackSettings(state_dir=state), None, "http://127.0.0.1:8000", state)
    text = up.console.export_text()
    assert f"partcheck users add NAME --password-stdin --store {state / 'users.json'}" in text
    assert f"partcheck status --state-dir {state}" in text


@pytest.mark.integration
def test_status_reads_the_state_folder_from_the_environment(moto, tmp_path, monkeypatch, local_env):
    settings = StackSettings(
        endpoint_url=moto, inbound_bucket="other-inbound", prediction_bucket="other-sorted"
    )
    bootstrap(client("s3", settings.aws()), client("sqs", settings.aws()), settings)
    state = tmp_path / "state"
    state.mkdir()
    recorded = {
        "endpoint": moto,
        "region": settings.region,
        "inbound_bucket": settings.inbound_bucket,
        "prediction_bucket": settings.prediction_bucket,
    }
    (state / "stack.json").write_text(json.dumps(recorded))
    monkeypatch.chdir(tmp_path)  # no ./.partcheck here
    monkeypatch.delenv("PARTCHECK_ENDPOINT_URL", raising=False)

    result = CliRunner().invoke(app, ["status", "--json"], env={"PARTCHECK_STATE_DIR": str(state)})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["buckets"] == {"inbound": "other-inbound", "prediction": "other-sorted"}
    assert doc["endpoints"]["s3"] == moto
    assert doc["storage"] == {"snapshots": "unknown"}  # the tests' moto keeps no state on disk


@pytest.mark.unit
def test_serve_review_keeps_its_session_secret_in_a_file(tmp_path, monkeypatch):
    import services.review.main

    seen: list[str | None] = []
    monkeypatch.setattr(
        services.review.main, "serve", lambda: seen.append(os.environ.get("PARTCHECK_REVIEW_SESSION_SECRET"))
    )
    monkeypatch.delenv("PARTCHECK_REVIEW_SESSION_SECRET", raising=False)
    path = tmp_path / "volume" / "session-secret"
    for _ in range(2):  # a container restart
        result = CliRunner().invoke(app, ["serve", "review", "--session-secret-file", str(path)])
        assert result.exit_code == 0, result.output
        monkeypatch.delenv("PARTCHECK_REVIEW_SESSION_SECRET", raising=False)
    assert seen[0] is not None
    assert len(seen[0]) >= 32
    assert seen == [seen[0], seen[0]]
    assert path.stat().st_mode & 0o777 == 0o600
    # A secret set by the operator wins over the file.
    result = CliRunner().invoke(
        app,
        ["serve", "review", "--session-secret-file", str(path)],
        env={"PARTCHECK_REVIEW_SESSION_SECRET": "from-the-operator"},
    )
    assert result.exit_code == 0, result.output
    assert seen[-1] == "from-the-operator"
    # A truncated file would sign sessions with a guessable key: refuse it.
    path.write_text("")
    result = CliRunner().invoke(app, ["serve", "review", "--session-secret-file", str(path)])
    assert isinstance(result.exception, InvalidInput)
    assert "delete it" in str(result.exception)
