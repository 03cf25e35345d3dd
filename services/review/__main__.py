"""`python -m services.review` runs the review service."""

from services.review.main import serve

serve()
