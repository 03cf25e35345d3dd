"""User store and the `partcheck users` commands."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from partcheck.errors import AlreadyExists, InvalidInput, NotFound
from services.review.cli import users_app
from services.review.users import UserStore, UserStoreUnavailable
from tests.services.review.conftest import FAST_HASHER

pytestmark = pytest.mark.unit


def test_add_verify_remove(tmp_path: Path) -> None:
    path = tmp_path / "state" / "users.json"
    store = UserStore(path, hasher=FAST_HASHER)
    store.add("alice", "s3cret-pass")
    assert store.verify("alice", "s3cret-pass")
    assert not store.verify("alice", "wrong-pass")
    assert not store.verify("nobody", "s3cret-pass")
    raw = json.loads(path.read_text())
    assert raw["users"]["alice"]["hash"].startswith("$argon2id$")
    assert "s3cret-pass" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(AlreadyExists):
        store.add("alice", "other-pass")
    store.add("alice", "other-pass", replace=True)
    assert store.verify("alice", "other-pass")
    store.remove("alice")
    assert store.list() == []
    with pytest.raises(NotFound):
        store.remove("alice")


def test_a_second_store_sees_changes(tmp_path: Path) -> None:
    # The service keeps its store open while `partcheck users add` writes the file.
    service = UserStore(tmp_path / "users.json", hasher=FAST_HASHER)
    assert not service.verify("bob", "bobs-password")
    UserStore(tmp_path / "users.json", hasher=FAST_HASHER).add("bob", "bobs-password")
    assert service.verify("bob", "bobs-password")


@pytest.mark.parametrize("name", ["", "-x", "a b", "../x", "a/b", "x" * 65, "é"])
def test_bad_names_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        UserStore(tmp_path / "u.json", hasher=FAST_HASHER).add(name, "long-enough")


def test_short_password_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="at least 8"):
        UserStore(tmp_path / "u.json", hasher=FAST_HASHER).add("alice", "short")


def test_corrupt_store_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_text("{broken")
    with pytest.raises(UserStoreUnavailable, match="unreadable"):
        UserStore(path, hasher=FAST_HASHER).list()


def test_cli_add_list_remove(tmp_path: Path) -> None:
    runner = CliRunner()
    store = str(tmp_path / "users.json")
    r = runner.invoke(users_app, ["add", "alice", "--password-stdin", "--store", store], input="pa55word-x\n")
    assert r.exit_code == 0, r.output
    assert UserStore(Path(store)).verify("alice", "pa55word-x")
    r = runner.invoke(users_app, ["add", "alice", "--password-stdin", "--store", store], input="another-1\n")
    assert r.exit_code == 1
    assert "already exists" in r.output
    r = runner.invoke(
        users_app, ["add", "bad name", "--password-stdin", "--store", store], input="pa55word-x\n"
    )
    assert r.exit_code == 1
    assert "invalid user name" in r.output
    r = runner.invoke(users_app, ["add", "bob", "--password-stdin", "--store", store], input="short\n")
    assert r.exit_code == 1
    assert "at least 8" in r.output
    r = runner.invoke(users_app, ["list", "--store", store])
    assert r.exit_code == 0
    assert r.output.splitlines()[0].startswith("alice\t")
    r = runner.invoke(users_app, ["remove", "alice", "--store", store])
    assert r.exit_code == 0
    r = runner.invoke(users_app, ["remove", "alice", "--store", store])
    assert r.exit_code == 1
    assert "no user named" in r.output


def test_cli_store_from_environment(tmp_path: Path) -> None:
    store = tmp_path / "env-users.json"
    r = CliRunner().invoke(
        users_app,
        ["add", "carol", "--password-stdin"],
        input="pa55word-x\n",
        env={"PARTCHECK_REVIEW_USERS_FILE": str(store)},
    )
    assert r.exit_code == 0, r.output
    assert [u.name for u in UserStore(store).list()] == ["carol"]


def test_partcheck_entry_point_has_users_group() -> None:
    from partcheck.cli import app

    r = CliRunner().invoke(app, ["users", "--help"])
    assert r.exit_code == 0
    assert "add" in r.output
    assert "remove" in r.output
