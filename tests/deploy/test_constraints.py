"""deploy/constraints.txt: the images install exactly the versions the test suite runs against."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    return pins


def test_constraints_pin_the_installed_version_of_every_package_the_images_install() -> None:
    # Names alone let the pins go stale: the images then ran moto, boto3 and cryptography releases the
    # tests never saw. `make install` installs with these constraints, so a fresh venv satisfies this.
    spec = importlib.util.spec_from_file_location("constraints", ROOT / "deploy" / "constraints.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    installed: dict[str, str] = module.closure()
    pins = _pins()
    differ = {
        name: (pins.get(name), installed.get(name))
        for name in installed.keys() | pins.keys()
        if pins.get(name) != installed.get(name)
    }
    assert not differ, (
        "deploy/constraints.txt differs from this environment (pinned, installed); regenerate it with "
        f"`.venv/bin/python deploy/constraints.py > deploy/constraints.txt`: {dict(sorted(differ.items()))}"
    )


def test_make_install_uses_the_constraints() -> None:
    # Without them a fresh `make install` resolves the newest releases, and the test above fails on a clone.
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP\):(?P<deps>.*)\n(?P<recipe>(?:\t.*\n)+)", makefile, re.M)
    assert rule, "no $(STAMP) rule in the Makefile"
    assert "deploy/constraints.txt" in rule["deps"].split(), "a new constraints file must reinstall"
    installs = [line for line in rule["recipe"].splitlines() if "pip install" in line and "-e " in line]
    assert len(installs) == 1, installs
    assert "--constraint deploy/constraints.txt" in installs[0]
