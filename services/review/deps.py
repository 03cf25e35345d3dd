"""FastAPI dependencies as Annotated aliases: settings, the review store, the user store, the inspector."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from services.review.auth import (
    COOKIE_NAME,
    CSRF_HEADER,
    OIDC_HEADER,
    AlbOidcVerifier,
    OidcError,
    SessionSigner,
    csrf_ok,
    monotonic_now,
)
from services.review.core import LoginLimiter
from services.review.settings import ReviewSettings
from services.review.store import ReviewStore
from services.review.users import UserStore

log = logging.getLogger(__name__)

# Password checks at once per process, and how long a login waits for one before a 503.
PASSWORD_CHECKS = 4
PASSWORD_CHECK_WAIT_S = 10.0


@dataclass(frozen=True)
class ReviewState:
    """Everything the routes share, built once by `create_app`."""

    settings: ReviewSettings
    store: ReviewStore
    users: UserStore
    sessions: SessionSigner
    limiter: LoginLimiter
    oidc: AlbOidcVerifier | None
    # Each argon2 check holds 64 MiB for tens of ms: a burst of logins must not take the memory.
    password_checks: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(PASSWORD_CHECKS)
    )


@dataclass(frozen=True)
class Inspector:
    """The authenticated inspector of a request."""

    username: str
    csrf_token: str
    via: str  # "session" or "oidc"


def get_state(request: Request) -> ReviewState:
    """The app's shared state."""
    state: ReviewState = request.app.state.review
    return state


StateDep = Annotated[ReviewState, Depends(get_state)]


def get_settings(state: StateDep) -> ReviewSettings:
    """The service settings."""
    return state.settings


def get_store(state: StateDep) -> ReviewStore:
    """The review store over the prediction bucket."""
    return state.store


def get_users(state: StateDep) -> UserStore:
    """The inspector accounts."""
    return state.users


SettingsDep = Annotated[ReviewSettings, Depends(get_settings)]
StoreDep = Annotated[ReviewStore, Depends(get_store)]
UsersDep = Annotated[UserStore, Depends(get_users)]

_UNAUTHENTICATED = HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in")


def current_inspector(request: Request, state: StateDep) -> Inspector:
    """The inspector behind the request: a verified ALB OIDC header (when enabled) or the session cookie."""
    if state.oidc is not None and (token := request.headers.get(OIDC_HEADER)):
        try:
            name = state.oidc.username(token)
        except OidcError as exc:
            log.warning("refused OIDC header: %s", exc)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "OIDC identity could not be verified") from exc
        return Inspector(name, state.sessions.csrf_for(name), "oidc")
    session = state.sessions.read(request.cookies.get(COOKIE_NAME), monotonic_now())
    if session is None:
        raise _UNAUTHENTICATED
    # A removed account or a reset password ends its sessions on every instance that reads this file.
    if state.users.stamp(session.username) != session.stamp:
        raise _UNAUTHENTICATED
    return Inspector(session.username, session.csrf_token, "session")


InspectorDep = Annotated[Inspector, Depends(current_inspector)]


def csrf_inspector(request: Request, inspector: InspectorDep) -> Inspector:
    """The inspector of a state-changing request, which must carry the session's CSRF token."""
    if not csrf_ok(inspector.csrf_token, request.headers.get(CSRF_HEADER)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "CSRF token missing or invalid")
    return inspector


CsrfInspectorDep = Annotated[Inspector, Depends(csrf_inspector)]
