"""Validate the compose files as `docker compose config` would, without a Docker engine.

    python deploy/compose_check.py docker-compose.yml                  # with no variables set
    python deploy/compose_check.py docker-compose.aws.yml --env-file F # with the variables in F

Compose interpolates `${VAR}`, `${VAR:-default}`, `${VAR:?message}` (and the `-`, `?`, `+`, `:+` forms)
in values after YAML parsing; this does the same, then validates the result with the compose-spec
package and checks what the schema cannot: every `depends_on` names a service, every build file exists.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])"
    r"(?P<arg>[^}]*))?\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class ComposeError(Exception):
    """The file would not load: missing required variables, schema errors or broken references."""


def interpolate(value: Any, env: Mapping[str, str], missing: list[str]) -> Any:
    """Substitute variables in every string of a parsed compose document; required misses go to `missing`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, missing) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["braced"] or m["named"]
        op, arg = m["op"], m["arg"] or ""
        is_set = name in env
        is_nonempty = bool(env.get(name))
        if op in {":-", "-"}:
            return env[name] if (is_nonempty if op == ":-" else is_set) else arg
        if op in {":?", "?"}:
            if is_nonempty if op == ":?" else is_set:
                return env[name]
            missing.append(f"{name}: {arg or 'required variable is missing a value'}")
            return ""
        if op in {":+", "+"}:
            return arg if (is_nonempty if op == ":+" else is_set) else ""
        return env.get(name, "")

    return _VAR.sub(substitute, value)


def load(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The compose document with variables substituted; ComposeError lists every missing one."""
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
        raise ComposeError(f"{path}: not a compose file with services")
    missing: list[str] = []
    doc: dict[str, Any] = interpolate(raw, env, missing)
    if missing:
        raise ComposeError(f"{path}: " + "; ".join(dict.fromkeys(missing)))
    return doc


def check(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Load, validate against the compose specification and check references; returns the document."""
    import compose_spec

    doc = load(path, env)
    try:
        compose_spec.PyCompose.from_json(json.dumps(doc)).validate()
    except ValueError as exc:
        raise ComposeError(f"{path}: {exc}") from exc
    services = doc["services"]
    problems = []
    for name, service in services.items():
        for dep in service.get("depends_on") or {}:
            if dep not in services:
                problems.append(f"{name} depends on unknown service {dep!r}")
        build = service.get("build")
        if isinstance(build, dict):
            dockerfile = path.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{name}: no {dockerfile}")
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: neither image nor build")
    if problems:
        raise ComposeError(f"{path}: " + "; ".join(problems))
    return doc


def _env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def main(argv: list[str]) -> int:
    """Check one compose file; exit status 1 on any problem."""
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--env-file"):
        print("usage: compose_check.py FILE [--env-file ENV]", file=sys.stderr)
        return 2
    env = _env_file(Path(argv[2])) if len(argv) == 3 else {}
    try:
        doc = check(Path(argv[0]), env)
    except ComposeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{argv[0]}: ok ({', '.join(doc['services'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
