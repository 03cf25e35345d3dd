"""The settings tables in the docs are the settings classes' own, so docs and code cannot drift."""

from pathlib import Path

import pytest

from partcheck.docs import settings_table
from partcheck.stack.config import StackSettings
from services.predict.settings import PredictSettings
from services.router.settings import RouterSettings

pytestmark = pytest.mark.unit
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("cls", [StackSettings, PredictSettings, RouterSettings])
def test_pipeline_doc_has_the_current_settings_table(cls):
    assert settings_table(cls) in (DOCS / "pipeline.md").read_text(), (
        "docs/pipeline.md is stale: regenerate the table with `python -m partcheck.docs`"
    )
