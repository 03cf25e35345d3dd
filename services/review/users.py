"""Inspector accounts: a JSON file of argon2 hashes, written atomically, re-read when it changes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from partcheck.errors import AlreadyExists, InvalidInput, NotFound, PartcheckError

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_FORMAT = 1


def validate_username(name: str) -> str:
    """Return `name` if it is an acceptable inspector name, else raise InvalidInput."""
    if not USERNAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid user name {name[:70]!r}: 1-64 characters, letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def validate_password(password: str) -> str:
    """Return `password` if long enough and not absurdly long, else raise InvalidInput."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password must have at most {MAX_PASSWORD} characters")
    return password


class UserStoreUnavailable(PartcheckError):
    """The accounts file cannot be read: a fault of the server, not of the request."""


@dataclass(frozen=True)
class User:
    """One inspector account."""

    name: str
    password_hash: str
    created_at: str


class UserStore:
    """Accounts in one JSON file; safe for the service reading while the CLI writes."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self._hasher = hasher or PasswordHasher()
        self._lock = threading.Lock()
        self._cache: dict[str, User] = {}
        self._stamp: tuple[int, int] | None = None
        # Verifying against a dummy hash for unknown names keeps login time independent of existence.
        self._dummy = self._hasher.hash("partcheck-no-such-user")

    def _load(self) -> dict[str, User]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._cache, self._stamp = {}, None
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return self._cache
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            users = {
                name: User(name, u["hash"], u.get("created_at", "")) for name, u in data["users"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserStoreUnavailable(f"user store {self.path} is unreadable: {exc}") from exc
        self._cache, self._stamp = users, stamp
        return users

    def _save(self, users: dict[str, User]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "format": _FORMAT,
            "users": {u.name: {"hash": u.password_hash, "created_at": u.created_at} for u in users.values()},
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._stamp = None

    def list(self) -> list[User]:
        """Every account, by name."""
        with self._lock:
            return sorted(self._load().values(), key=lambda u: u.name)

    def add(self, name: str, password: str, *, replace: bool = False) -> User:
        """Create an account (or replace its password with `replace`); AlreadyExists otherwise."""
        validate_username(name)
        validate_password(password)
        with self._lock:
            users = dict(self._load())
            if name in users and not replace:
                raise AlreadyExists(f"user {name!r} already exists (use --replace to set a new password)")
            user = User(name, self._hasher.hash(password), datetime.now(UTC).isoformat(timespec="seconds"))
            users[name] = user
            self._save(users)
        return user

    def remove(self, name: str) -> None:
        """Delete an account; NotFound if there is none of that name."""
        with self._lock:
            users = dict(self._load())
            if name not in users:
                raise NotFound(f"no user named {name!r}")
            del users[name]
            self._save(users)

    def stamp(self, name: str) -> str | None:
        """A token that changes whenever the account's password is set; None once it is removed.

        Sessions carry it, so removing an account or resetting its password ends its sessions.
        """
        with self._lock:
            user = self._load().get(name)
        if user is None:
            return None
        # The hash has a fresh salt each time the password is set, so even the same password changes it.
        return hashlib.sha256(user.password_hash.encode("utf-8")).hexdigest()[:16]

    def verify(self, name: str, password: str) -> bool:
        """Whether the password is right for that account; unknown names take as long as known ones."""
        with self._lock:
            user = self._load().get(name)
        if len(password) > MAX_PASSWORD:
            return False
        try:
            return (
                self._hasher.verify(user.password_hash if user else self._dummy, password)
                and user is not None
            )
        except (VerificationError, InvalidHashError):
            return False
