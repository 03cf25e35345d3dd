"""Review service: FastAPI app, S3 adapter and user store for inspecting unclear images."""
