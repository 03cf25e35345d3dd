"""Entry point of the review service: settings read once, clients built once, uvicorn started."""

from __future__ import annotations

import logging


def serve() -> None:
    """Run the review service on the configured host and port (the local stack and containers run this)."""
    import uvicorn

    from partcheck.aws import client
    from services.review.app import create_app
    from services.review.settings import ReviewSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ReviewSettings()
    aws = settings.aws()
    # The second client makes one attempt per call: a blind retry of a delete whose answer was lost could
    # remove an image an undo put back meanwhile (ReviewStore._remove_from_unclear).
    app = create_app(
        settings, client("s3", aws), s3_once=client("s3", aws.model_copy(update={"max_attempts": 0}))
    )
    # proxy_headers: behind a load balancer the client address (login rate limit) is in X-Forwarded-For.
    uvicorn.run(app, host=settings.host, port=settings.port, proxy_headers=True, log_level="info")
