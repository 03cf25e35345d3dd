"""Settings tables for the docs, generated from the settings classes so they cannot drift."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]


def settings_table(cls: type[BaseSettings]) -> str:
    """A markdown table of a settings class: environment variable, default, meaning."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    rows = ["| environment variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Path) and default.is_absolute() and default.is_relative_to(ROOT):
            default = default.relative_to(ROOT)
        shown = "—" if default is None else f"`{default}`"
        rows.append(f"| `{(prefix + name).upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    from partcheck.stack.config import StackSettings
    from services.predict.settings import PredictSettings
    from services.router.settings import RouterSettings

    tables: dict[str, tuple[str, type[BaseSettings]]] = {
        "stack": ("Local stack and `partcheck bootstrap` (`PARTCHECK_`)", StackSettings),
        "predict": ("predict (`PARTCHECK_PREDICT_`)", PredictSettings),
        "router": ("router (`PARTCHECK_ROUTER_`)", RouterSettings),
    }
    for name in sys.argv[1:] or list(tables):
        title, cls = tables[name]
        print(f"### {title}\n\n{settings_table(cls)}\n")
