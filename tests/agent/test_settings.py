"""Unit tests of settings precedence: CLI flags over environment over config file over defaults."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.settings import load_settings
from partcheck.errors import InvalidInput
from partcheck.settings import DEFAULT_INBOUND_BUCKET, AwsSettings

pytestmark = pytest.mark.unit


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARTCHECK_AGENT_BUCKET", raising=False)
    s = load_settings()
    assert isinstance(s, AwsSettings)
    assert s.bucket == DEFAULT_INBOUND_BUCKET
    assert s.state_dir == Path(".partcheck/agent")
    assert s.after_upload == "archive"
    assert s.archive_path() == Path(".partcheck/agent/archive")


def test_cli_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[agent]\nbucket = "from-file"\nline = "file-line"\ncamera = "file-cam"\n'
                   'formats = "jpeg, png"\n')  # fmt: skip
    monkeypatch.setenv("PARTCHECK_AGENT_LINE", "env-line")
    monkeypatch.setenv("PARTCHECK_AGENT_CAMERA", "env-cam")
    s = load_settings(cfg, camera="cli-cam", bucket=None)
    assert (s.bucket, s.line, s.camera) == ("from-file", "env-line", "cli-cam")
    assert s.formats == ("JPEG", "PNG")


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("bucket = ")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_settings(cfg)
    with pytest.raises(InvalidInput, match="cannot read"):
        load_settings(tmp_path / "missing.toml")


def test_template_must_name_the_file() -> None:
    with pytest.raises(ValueError, match="key_template"):
        load_settings(key_template="{line}/{camera}")


@pytest.mark.parametrize(
    ("template", "why"),
    [("{plant}/{name}", "unknown field 'plant'"), ("{line}/{date:%Y}/{name}", "Invalid format specifier")],
)
def test_a_template_that_cannot_render_is_refused_at_start(template: str, why: str) -> None:
    with pytest.raises(ValidationError, match="key_template") as info:
        load_settings(key_template=template)
    assert why in str(info.value)
    assert "{prefix} {line} {camera} {date}" in str(info.value)  # the fields it may use


def test_every_template_field_is_accepted() -> None:
    template = "{prefix}/{line}/{camera}/{date}/{subdir}/{stem}-{sha8}{suffix}"
    assert load_settings(key_template=template).key_template == template


def test_formats_from_the_environment_as_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTCHECK_AGENT_FORMATS", "jpeg, png")
    monkeypatch.setenv("PARTCHECK_AGENT_POLL", "true")
    s = load_settings()
    assert s.formats == ("JPEG", "PNG")
    assert s.poll is True


def test_cli_refuses_missing_watch_and_bad_values(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    runner = CliRunner()
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "--watch" in result.output
    result = runner.invoke(app, ["--watch", str(tmp_path), "--after-upload", "shred"])
    assert result.exit_code == 2
    assert "invalid agent settings" in result.output
    result = runner.invoke(app, ["status", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no outbox" in result.output


def test_every_agent_command_refuses_invalid_settings_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    runner = CliRunner()
    bad_file = tmp_path / "agent.toml"
    bad_file.write_text('after_upload = "shred"\n')
    for args, env in [
        (["--watch", str(tmp_path), "--config", str(bad_file)], {}),
        (["status", "--config", str(bad_file)], {}),
        (["status", "--state-dir", str(tmp_path)], {"PARTCHECK_AGENT_WORKERS": "99"}),
        (["status", "--state-dir", str(tmp_path)], {"PARTCHECK_AGENT_KEY_TEMPLATE": "{plant}/{name}"}),
        (["status", "--config", str(tmp_path / "missing.toml")], {}),
    ]:
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, env, result.output)
        assert "invalid agent settings" in result.output
        assert "Traceback" not in result.output


def test_cli_refuses_an_unusable_state_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["--watch", str(tmp_path), "--state-dir", str(blocker / "state")])
    assert result.exit_code == 2
    assert "cannot open the outbox" in result.output
    assert logging.getLogger("partcheck.agent").propagate  # no logging set up on the way out


@pytest.mark.parametrize(
    "bucket", ["<InboundBucketName>", "Partcheck-Inbound", "my_bucket", "ab", "a..b", "-ab"]
)
def test_a_bucket_that_cannot_exist_is_refused_at_start(bucket: str) -> None:
    with pytest.raises(ValidationError, match="not an S3 bucket name"):
        load_settings(bucket=bucket)


def test_real_bucket_names_are_accepted() -> None:
    for bucket in ("partcheck-inbound", "partcheck-inbound-123456789012-eu-west-1", "a.b-c1"):
        assert load_settings(bucket=bucket).bucket == bucket


SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "agent" / "agent.toml"


def test_status_reads_the_outbox_of_a_config_still_holding_the_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from agent import cli
    from agent.outbox import Outbox

    monkeypatch.delenv("PARTCHECK_AGENT_BUCKET", raising=False)
    assert 'bucket = "<InboundBucketName>"' in SHIPPED_CONFIG.read_text()  # the file as shipped
    state = tmp_path / "state"
    runner = CliRunner()
    base = ["status", "--config", str(SHIPPED_CONFIG), "--state-dir", str(state)]
    # No outbox yet: the usual exit 1, and the bucket named as the reason the agent has not run.
    result = runner.invoke(cli.app, base)
    assert result.exit_code == 1, result.output
    assert "no outbox" in result.output
    assert "bucket not configured yet" in result.output
    outbox = Outbox(state / "outbox.sqlite3")
    outbox.add(path=str(tmp_path / "a.jpg"), name="a.jpg", state="pending", sha256="0" * 64, key="k/a.jpg")
    outbox.close()
    result = runner.invoke(cli.app, base)
    assert result.exit_code == 0, result.output
    assert "pending 1" in result.output
    assert "bucket not configured yet" in result.output
    assert "'<InboundBucketName>' is not an S3 bucket name" in result.output
    result = runner.invoke(cli.app, [*base, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["counts"]["pending"] == 1
    assert doc["bucket"]["name"] == "<InboundBucketName>"
    assert doc["bucket"]["configured"] is False
    # A real bucket: nothing said about it.
    monkeypatch.setenv("PARTCHECK_AGENT_BUCKET", "partcheck-inbound-123456789012-eu-west-1")
    result = runner.invoke(cli.app, base)
    assert result.exit_code == 0, result.output
    assert "pending 1" in result.output
    assert "bucket not configured" not in result.output


def test_starting_the_agent_with_the_placeholder_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from agent import cli

    monkeypatch.delenv("PARTCHECK_AGENT_BUCKET", raising=False)
    started: list[object] = []
    monkeypatch.setattr(cli, "_run", started.append)  # a regression fails here instead of running an agent
    args = ["--config", str(SHIPPED_CONFIG), "--state-dir", str(tmp_path / "state"), "--watch", str(tmp_path)]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    assert "invalid agent settings" in result.output
    assert "'<InboundBucketName>' is not an S3 bucket name" in result.output
    assert started == []
    assert not (tmp_path / "state").exists()
