"""The review service: FastAPI routes over the review store, plus the built inspector page."""

from __future__ import annotations

import html
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError

import partcheck
from partcheck.errors import (
    AccessDenied,
    AlreadyExists,
    InvalidInput,
    InvalidKey,
    NotFound,
    PartcheckError,
    StorageUnavailable,
)
from partcheck.storage import ObjectStore
from services.review import core
from services.review.auth import (
    COOKIE_NAME,
    AlbOidcVerifier,
    KeySource,
    SessionSigner,
    alb_key_source,
    monotonic_now,
)
from services.review.deps import (
    PASSWORD_CHECK_WAIT_S,
    CsrfInspectorDep,
    InspectorDep,
    ReviewState,
    SettingsDep,
    StateDep,
    StoreDep,
)
from services.review.settings import ReviewSettings
from services.review.store import ConflictError, ReviewStore
from services.review.users import UserStore, UserStoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

MAX_PAGE = 200
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


# --- response and request models ------------------------------------------------------------------


class ErrorOut(BaseModel):
    """Every error response."""

    detail: str


class LoginIn(BaseModel):
    """Credentials."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class MeOut(BaseModel):
    """The logged-in inspector and the token to send as X-CSRF-Token."""

    username: str
    csrf_token: str


class HealthOut(BaseModel):
    """Liveness and what the service is wired to."""

    status: Literal["ok"]
    version: str
    bucket: str
    frontend_built: bool


class ConfigOut(BaseModel):
    """Timings the page needs."""

    undo_seconds: int
    claim_seconds: int


class ItemOut(BaseModel):
    """One image waiting in unclear/."""

    id: str = Field(description="opaque, URL-safe")
    key: str
    name: str
    model_label: Literal["ok", "defect", "unclear"]
    confidence: float = Field(ge=0, le=1)
    p_defect: float = Field(ge=0, le=1)
    model_version: str
    reason: str | None
    line: str | None
    camera: str | None
    uploaded_at: str = Field(description="ISO 8601")
    claimed_by: str | None
    claim_expires_at: str | None


class QueueOut(BaseModel):
    """A page of the queue, oldest first."""

    items: list[ItemOut]
    next_cursor: str | None
    total: int = Field(description="images waiting in unclear/")


class ClaimOut(BaseModel):
    """A claim taken or extended."""

    id: str
    claimed_by: str
    expires_at: str


class DecisionIn(BaseModel):
    """An inspector's verdict."""

    label: Literal["ok", "defect"]
    note: str | None = Field(default=None, max_length=core.MAX_NOTE_CHARS)


class DecisionOut(BaseModel):
    """A decision that took effect."""

    id: str
    label: Literal["ok", "defect"]
    decided_key: str
    decided_by: str
    decided_at: str
    undo_until: str


class UndoOut(BaseModel):
    """The image put back into unclear/."""

    id: str
    key: str


class HistoryItem(BaseModel):
    """One audit record."""

    id: str
    key: str
    decided_key: str
    label: Literal["ok", "defect"]
    note: str | None
    inspector: str
    decided_at: str
    at: str
    model_label: str | None
    confidence: float | None
    model_version: str | None
    action: Literal["decision", "undo"]


class HistoryOut(BaseModel):
    """Recent decisions and undos, newest first."""

    items: list[HistoryItem]
    next_cursor: str | None = None


class Counts(BaseModel):
    """Objects per prefix of the prediction bucket."""

    okay: int
    defect: int
    unclear: int
    human_decided: int
    rejected: int


class HourOut(BaseModel):
    """Decisions in one hour."""

    hour: str
    decisions: int


class StatsOut(BaseModel):
    """Dashboard figures."""

    counts: Counts
    defect_rate: float
    unclear_rate: float
    throughput_per_hour: list[HourOut]
    oldest_unclear_age_s: float | None
    computed_at: str
    totals_computed_at: str = Field(
        description="when okay/, defect/, human_decided/ and rejected/ were last counted (ISO 8601)"
    )


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


# --- the page ---------------------------------------------------------------------------------------

_MISSING_BUILD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>partcheck review: page not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The inspector page has not been built</h1>
<p>The review API is running, but there is no built page in <code>{static_dir}</code>.</p>
<p>Build it with <code>make install</code>, or
<code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>, then reload this page.
The API's documentation is at <a href="/docs">/docs</a>.</p>
</body></html>
"""


def _page_routes(app: FastAPI, static_dir: Path) -> None:
    app.mount("/assets", StaticFiles(directory=static_dir / "assets", check_dir=False), name="assets")
    root = static_dir.resolve()

    @app.get("/{path:path}", include_in_schema=False)
    def page(path: str) -> Response:
        if path == "api" or path.startswith("api/"):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API route /{path}")
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(_MISSING_BUILD.format(static_dir=html.escape(str(root))))
        if path and "/" not in path:
            candidate = (root / path).resolve()
            # Top-level files of the build (favicon, robots.txt); never anything outside it.
            if candidate.parent == root and candidate.is_file():
                return FileResponse(candidate)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})


# --- the app ----------------------------------------------------------------------------------------


def create_app(
    settings: ReviewSettings,
    s3_client: S3Client,
    *,
    users: UserStore | None = None,
    key_source: KeySource | None = None,
    s3_once: S3Client | None = None,
) -> FastAPI:
    """Build the review app; the S3 client and, for tests, the user store and ALB key source are passed in.

    `s3_once` is a client of the same storage that does not retry on its own, for the one step that must
    look before it retries (a decision's removal from unclear/); without it `s3_client` is used.
    """
    store = ReviewStore(
        ObjectStore(s3_client),
        settings.prediction_bucket,
        settings.audit_bucket_name,
        queue_max_age_s=settings.queue_refresh_seconds,
        stats_max_age_s=settings.stats_cache_seconds,
        totals_max_age_s=settings.stats_totals_seconds,
        max_image_bytes=settings.max_image_bytes,
        # Past the undo window (and its 5 s of slack) no decision or undo on this marker is running.
        repair_after_s=settings.undo_seconds + 60.0,
        once=ObjectStore(s3_once) if s3_once is not None else None,
    )
    if settings.session_secret is None:
        log.warning(
            "PARTCHECK_REVIEW_SESSION_SECRET is unset: sessions end when this process stops and "
            "are not shared with other instances"
        )
        secret = secrets.token_bytes(32)
    else:
        secret = settings.session_secret.get_secret_value().encode("utf-8")
    oidc = None
    if settings.trust_alb_oidc and settings.alb_arn:
        oidc = AlbOidcVerifier(
            settings.alb_arn,
            key_source or alb_key_source(settings.alb_key_url, settings.region),
            settings.oidc_username_claim,
        )
    state = ReviewState(
        settings,
        store,
        users or UserStore(settings.users_file),
        SessionSigner(secret, settings.session_hours * 3600),
        core.LoginLimiter(settings.login_max_failures, settings.login_window_seconds),
        oidc,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="partcheck review",
        version=partcheck.__version__,
        lifespan=lifespan,
        description="Inspector review of unclear images: queue, claims, decisions, audit log.",
    )
    app.state.review = state
    _error_handlers(app)
    _security_headers(app)
    _api_routes(app)
    _page_routes(app, settings.static_dir)
    return app


async def user_store_unavailable(_: Request, exc: Exception) -> Response:
    """503 without the file's path: a server fault the inspector cannot fix (the log has the detail)."""
    log.error("%s", exc)
    return JSONResponse({"detail": "user accounts are unavailable; tell the administrator"}, status_code=503)


def _error_handlers(app: FastAPI) -> None:
    def handler(code: int, prefix: str = "") -> Callable[[Request, Exception], Awaitable[Response]]:
        async def respond(_: Request, exc: Exception) -> Response:
            if code >= 500:
                log.error("%s%s", prefix, exc)
            return JSONResponse({"detail": f"{prefix}{exc}"}, status_code=code)

        return respond

    app.add_exception_handler(ConflictError, handler(status.HTTP_409_CONFLICT))
    app.add_exception_handler(AlreadyExists, handler(status.HTTP_409_CONFLICT))
    app.add_exception_handler(NotFound, handler(status.HTTP_404_NOT_FOUND))
    app.add_exception_handler(InvalidKey, handler(status.HTTP_400_BAD_REQUEST, "invalid id or key: "))
    app.add_exception_handler(InvalidInput, handler(status.HTTP_400_BAD_REQUEST))
    app.add_exception_handler(StorageUnavailable, handler(503, "storage unavailable: "))
    app.add_exception_handler(UserStoreUnavailable, user_store_unavailable)
    app.add_exception_handler(AccessDenied, handler(503, "storage refused access: "))
    app.add_exception_handler(PartcheckError, handler(503, "storage error: "))


def _security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", _CSP)
        if request.url.path.startswith("/assets/") and response.status_code == 200:
            # Vite puts a content hash in every asset name, so a cached copy never goes stale.
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        elif request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _api_routes(app: FastAPI) -> None:
    @app.post("/api/login", response_model=MeOut, responses=_errors(401, 429), tags=["auth"])
    def login(body: LoginIn, request: Request, response: Response, state: StateDep) -> MeOut:
        """Log in with a user name and password; sets the session cookie."""
        now = monotonic_now()
        keys = [f"user:{body.username.lower()}", f"ip:{_client_ip(request)}"]
        # In flight, an attempt counts towards the limit: guesses sent in parallel cannot pass it together.
        wait = state.limiter.begin(keys, now)
        if wait is not None:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"too many failed logins; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        right: bool | None = None  # None: the server could not check it, which is no failed guess
        try:
            if not state.password_checks.acquire(timeout=PASSWORD_CHECK_WAIT_S):
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    "too many logins at once; try again",
                    headers={"Retry-After": "1"},
                )
            try:
                right = state.users.verify(body.username, body.password)
            finally:
                state.password_checks.release()
        finally:
            state.limiter.end(keys, now, failed=right is False)
        if not right:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
        state.limiter.succeed(keys[0])
        session, cookie = state.sessions.issue(body.username, now, state.users.stamp(body.username) or "")
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=int(state.sessions.lifetime_s),
            httponly=True,
            secure=state.settings.cookie_secure,
            samesite="strict",
            path="/",
        )
        log.info("login: %s from %s", body.username, _client_ip(request))
        return MeOut(username=session.username, csrf_token=session.csrf_token)

    @app.post(
        "/api/logout", status_code=204, response_class=Response, responses=_errors(401, 403), tags=["auth"]
    )
    def logout(request: Request, inspector: CsrfInspectorDep, state: StateDep) -> Response:
        """End the session."""
        session = state.sessions.read(request.cookies.get(COOKIE_NAME), monotonic_now())
        if session is not None:
            state.sessions.revoke(session, monotonic_now())
        response = Response(status_code=204)
        response.delete_cookie(
            COOKIE_NAME, path="/", httponly=True, secure=state.settings.cookie_secure, samesite="strict"
        )
        return response

    @app.get("/api/me", response_model=MeOut, responses=_errors(401), tags=["auth"])
    def me(inspector: InspectorDep) -> MeOut:
        """The logged-in inspector and the CSRF token for state-changing requests."""
        return MeOut(username=inspector.username, csrf_token=inspector.csrf_token)

    @app.get("/api/health", response_model=HealthOut, tags=["meta"])
    def health(settings: SettingsDep) -> HealthOut:
        """Liveness; needs no login."""
        return HealthOut(
            status="ok",
            version=partcheck.__version__,
            bucket=settings.prediction_bucket,
            frontend_built=(settings.static_dir / "index.html").is_file(),
        )

    @app.get("/api/config", response_model=ConfigOut, tags=["meta"])
    def config(settings: SettingsDep) -> ConfigOut:
        """Undo and claim windows; needs no login."""
        return ConfigOut(undo_seconds=settings.undo_seconds, claim_seconds=settings.claim_seconds)

    @app.get("/api/queue", response_model=QueueOut, responses=_errors(400, 401, 503), tags=["review"])
    def queue(
        inspector: InspectorDep,
        store: StoreDep,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
    ) -> dict[str, Any]:
        """Images waiting in unclear/, oldest first, one page at a time."""
        return store.queue_page(cursor, limit, core.now_utc())

    @app.get(
        "/api/items/{item_id}", response_model=ItemOut, responses=_errors(400, 401, 404, 503), tags=["review"]
    )
    def item(item_id: str, inspector: InspectorDep, store: StoreDep) -> dict[str, Any]:
        """One waiting image; 404 says who decided it if it is gone."""
        return store.item(core.decode_id(item_id), core.now_utc())

    @app.get(
        "/api/items/{item_id}/image",
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "image bytes"},
            **_errors(400, 401, 404, 503),
        },
        tags=["review"],
    )
    def image(item_id: str, inspector: InspectorDep, store: StoreDep) -> Response:
        """The image of a waiting or already decided item, through the service (the bucket stays private)."""
        img = store.image(core.decode_id(item_id))
        return Response(
            img.body,
            media_type=img.content_type,
            headers={"Cache-Control": "private, max-age=300", "ETag": f'"{img.etag}"'},
        )

    @app.post(
        "/api/items/{item_id}/claim",
        response_model=ClaimOut,
        responses=_errors(400, 401, 403, 404, 409, 503),
        tags=["review"],
    )
    def claim(item_id: str, inspector: CsrfInspectorDep, store: StoreDep, settings: SettingsDep) -> ClaimOut:
        """Hold an item for claim_seconds; extends one's own claim; 409 if someone else holds it."""
        held = store.claim(
            core.decode_id(item_id), inspector.username, core.now_utc(), settings.claim_seconds
        )
        return ClaimOut(id=item_id, claimed_by=held.inspector, expires_at=core.iso(held.expires_at))

    @app.post(
        "/api/items/{item_id}/decision",
        response_model=DecisionOut,
        responses=_errors(400, 401, 403, 404, 409, 503),
        tags=["review"],
    )
    def decision(
        item_id: str, body: DecisionIn, inspector: CsrfInspectorDep, store: StoreDep, settings: SettingsDep
    ) -> DecisionOut:
        """Decide ok or defect: the image moves to human_decided/ once; a second decision gets 409."""
        key = core.decode_id(item_id)
        note = core.validate_note(body.note)
        d = store.decide(key, body.label, inspector.username, note, core.now_utc(), settings.undo_seconds)
        log.info("decision: %s %s as %s", inspector.username, key, body.label)
        return DecisionOut(
            id=item_id,
            label=d.label,
            decided_key=d.decided_key,
            decided_by=d.decided_by,
            decided_at=core.iso(d.decided_at),
            undo_until=core.iso(d.undo_until),
        )

    @app.post("/api/undo", response_model=UndoOut, responses=_errors(401, 403, 409, 503), tags=["review"])
    def undo(inspector: CsrfInspectorDep, store: StoreDep, settings: SettingsDep) -> UndoOut:
        """Undo one's own last decision within undo_seconds; the image returns to unclear/."""
        key = store.undo(inspector.username, core.now_utc(), settings.undo_seconds)
        log.info("undo: %s %s", inspector.username, key)
        return UndoOut(id=core.encode_id(key), key=key)

    @app.get("/api/history", response_model=HistoryOut, responses=_errors(401, 503), tags=["review"])
    def history(
        inspector: InspectorDep,
        store: StoreDep,
        settings: SettingsDep,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        inspector_name: Annotated[str | None, Query(alias="inspector", max_length=64)] = None,
        label: Annotated[Literal["ok", "defect"] | None, Query()] = None,
        since: Annotated[datetime | None, Query()] = None,
        cursor: Annotated[str | None, Query(max_length=256)] = None,
    ) -> dict[str, Any]:
        """Recent decisions and undos from the audit log, newest first, a page at a time."""
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        records, next_cursor = store.history(
            limit, inspector_name or None, label, since, core.now_utc(), settings.history_days, cursor
        )
        return {"items": _history_items(records), "next_cursor": next_cursor}

    @app.get("/api/stats", response_model=StatsOut, responses=_errors(401, 503), tags=["review"])
    def stats(inspector: InspectorDep, store: StoreDep) -> dict[str, Any]:
        """Counts per prefix, rates, 24-hour throughput, oldest waiting image's age (cached briefly)."""
        return store.stats()


def _history_items(records: list[dict[str, Any]]) -> list[HistoryItem]:
    items = []
    for record in records:
        try:
            items.append(HistoryItem.model_validate(record))
        except ValidationError:
            # Records come from a bucket others can write to; one odd record must not break the view.
            log.warning("audit record skipped in history: %s", str(record)[:200])
    return items
