"""The Elastic Beanstalk bundle: the review image's build context plus .ebextensions, reproducible."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _bundle_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eb_bundle", ROOT / "deploy" / "eb" / "bundle.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_copy_sources_parsed_from_dockerfile() -> None:
    bundle = _bundle_module()
    text = "FROM x AS a\nCOPY a.txt b/ ./\nCOPY --from=a /x /y\nCOPY --chown=1:1 c \\\n  /d\n# COPY e f\n"
    assert bundle.copy_sources(text) == ["a.txt", "b", "c"]


def test_bundle_contents_and_reproducible(tmp_path: Path) -> None:
    bundle = _bundle_module()
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    bundle.main(["--out", str(first)])
    bundle.main(["--out", str(second)])
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = set(zf.namelist())
        assert zf.read("Dockerfile") == (ROOT / "services/review/Dockerfile").read_bytes()
        config = zf.read(".ebextensions/partcheck.config").decode()
    assert "/api/health" in config
    for required in [
        "pyproject.toml",
        "services/review/app.py",
        "services/review/main.py",
        "partcheck/layout.py",
        "frontend/package.json",
        "frontend/package-lock.json",
    ]:
        assert required in names, required
    for source in bundle.copy_sources((ROOT / "services/review/Dockerfile").read_text()):
        assert any(n == source or n.startswith(source.rstrip("/") + "/") for n in names), source
    assert not [
        n for n in names if "__pycache__" in n or "node_modules" in n or n.startswith("frontend/dist")
    ]


def test_bundled_app_imports_from_the_bundle(tmp_path: Path) -> None:
    bundle = _bundle_module()
    out = tmp_path / "b.zip"
    bundle.main(["--out", str(out)])
    extracted = tmp_path / "x"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(extracted)
    code = "import services.review.main as m, services.review.app; print(m.__file__)"
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=extracted, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(extracted))


def test_eb_trusts_forwarded_addresses_only_from_its_proxies() -> None:
    config = yaml.safe_load((ROOT / "deploy/eb/.ebextensions/partcheck.config").read_text())
    allow = config["option_settings"]["aws:elasticbeanstalk:application:environment"]["FORWARDED_ALLOW_IPS"]
    seen: list[tuple[str, int]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"])

    async def call(peer: str, forwarded: str) -> None:
        scope = {
            "type": "http",
            "client": (peer, 5000),
            "headers": [(b"x-forwarded-for", forwarded.encode())],
        }
        await ProxyHeadersMiddleware(app, trusted_hosts=allow)(scope, None, None)  # type: ignore[arg-type]

    # nginx on the host reaches the container through the Docker bridge; the ALB (VPC address) appended
    # the real client after whatever the client claimed.
    # In a thread of its own: the browser tests leave an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, call("172.17.0.1", "6.6.6.6, 203.0.113.9, 172.31.5.5")).result()
    # Sent straight to the container from outside: the header is not believed.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, call("198.51.100.7", "6.6.6.6")).result()
    assert [host for host, _ in seen] == ["203.0.113.9", "198.51.100.7"]


def test_users_file_lives_on_a_host_directory_the_container_user_owns(tmp_path: Path) -> None:
    # Without a host volume the accounts `partcheck users add` writes vanish with the container, i.e. at
    # every `eb deploy` and restart.
    bundle = _bundle_module()
    out = tmp_path / "b.zip"
    bundle.main(["--out", str(out)])
    with zipfile.ZipFile(out) as zf:
        dockerfile = zf.read("Dockerfile").decode()
        dockerrun = json.loads(zf.read("Dockerrun.aws.json"))
        config = yaml.safe_load(zf.read(".ebextensions/partcheck.config"))
    users_file = re.search(r"PARTCHECK_REVIEW_USERS_FILE=(\S+)", dockerfile)
    assert users_file, "the image names its users file"
    users_dir = PurePosixPath(users_file.group(1)).parent
    assert dockerrun["AWSEBDockerrunVersion"] == "1"
    # With a Dockerfile in the bundle, Beanstalk builds it and ignores an Image key: none to mislead.
    assert "Image" not in dockerrun
    mounts = {PurePosixPath(v["ContainerDirectory"]): v["HostDirectory"] for v in dockerrun["Volumes"]}
    assert users_dir in mounts, f"{users_dir} is not a host volume: accounts die with the container"
    host = PurePosixPath(mounts[users_dir])
    assert host.is_absolute()
    # Beanstalk replaces the deployed source tree on every deploy; the directory must be outside it.
    assert not host.is_relative_to("/var/app/current")
    assert not host.is_relative_to("/var/app/staging")
    environment = config["option_settings"]["aws:elasticbeanstalk:application:environment"]
    assert environment.get("PARTCHECK_REVIEW_USERS_FILE", users_file.group(1)) == users_file.group(1)

    # The host directory exists before the container starts and belongs to the user the image runs as.
    (uid, gid) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)[-1]
    made = [shlex.split(c["command"]) for c in config["commands"].values()]
    creates = [c for c in made if c[:2] == ["install", "-d"] and c[-1] == str(host)]
    assert len(creates) == 1, made
    args = creates[0]
    assert args[args.index("-o") + 1] == uid
    assert args[args.index("-g") + 1] == gid
