"""`partcheck predict`, `train` and `evaluate`."""

import typer


def predict() -> None:
    """Classify local image files with the configured model."""
    raise typer.Exit("not implemented yet")


def train() -> None:
    """Train the defect classifier from scratch and export it to ONNX."""
    raise typer.Exit("not implemented yet")


def evaluate() -> None:
    """Evaluate a model on a folder laid out as def_front/ and ok_front/."""
    raise typer.Exit("not implemented yet")
