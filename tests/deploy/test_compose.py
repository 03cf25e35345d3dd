"""docker-compose.yml without Docker: the file is checked against the compose specification, then every
service's own command, environment and health check runs as a local process against the compose file's
own moto service, and an image dropped into the inbox comes out sorted."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import boto3
import pytest
import yaml

from partcheck.stack.config import free_port
from tests.deploy.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_AWS = ROOT / "docker-compose.aws.yml"
AWS_ENV = {
    "AWS_REGION": "eu-west-1",
    "PARTCHECK_INBOUND_BUCKET": "partcheck-inbound-123456789012-eu-west-1",
    "PARTCHECK_PREDICTION_BUCKET": "partcheck-predictions-123456789012-eu-west-1",
    "PARTCHECK_REVIEW_SESSION_SECRET": "0123456789abcdef0123456789abcdef",
}
# Paths inside the images that the repository provides to local processes.
IMAGE_PATHS = {
    "/opt/partcheck/healthcheck.py": ROOT / "deploy" / "healthcheck.py",
    "/opt/partcheck/models": ROOT / "models",
    "/opt/partcheck/frontend/dist": ROOT / "frontend" / "dist",
}
ROUTED = ("okay/", "defect/", "unclear/", "rejected/")


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_check", ROOT / "deploy" / "compose_check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compose_check"] = module
    spec.loader.exec_module(module)
    return module


compose_check = _load_checker()


def dockerfile_env(path: Path) -> dict[str, str]:
    """ENV of the final stage of a Dockerfile (what the container's processes see)."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    final_stage = [
        line
        for i, line in enumerate(lines)
        if i > max(j for j, candidate in enumerate(lines) if candidate.upper().startswith("FROM "))
    ]
    env: dict[str, str] = {}
    for line in final_stage:
        if line.upper().startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def dockerfile_of(service: dict[str, Any]) -> Path | None:
    """The Dockerfile a compose service is built from (or shares the image of)."""
    build = service.get("build")
    if isinstance(build, dict):
        return ROOT / build.get("context", ".") / build["dockerfile"]
    return None


# ---------------------------------------------------------------- the files themselves


@pytest.fixture(scope="module")
def local() -> dict[str, Any]:
    doc: dict[str, Any] = compose_check.check(COMPOSE, {})
    return doc


@pytest.mark.unit
def test_local_file_is_valid_with_no_variables_set(local: dict[str, Any]) -> None:
    services = local["services"]
    assert set(services) == {"moto", "bootstrap", "predict", "router", "review", "agent"}
    assert "${" not in str(local), "every variable needs a default in the local file"
    for name, service in services.items():
        assert service["command"][0] == "partcheck", name
        if name != "bootstrap":
            assert service["healthcheck"]["test"][0] == "CMD", name
            assert service["restart"] == "unless-stopped", name
    assert services["bootstrap"]["depends_on"] == {"moto": {"condition": "service_healthy"}}
    assert services["bootstrap"]["restart"] == "no"
    for name in ("predict", "router", "review", "agent"):
        assert services[name]["depends_on"] == {"bootstrap": {"condition": "service_completed_successfully"}}
    assert "./inbox:/inbox" in services["agent"]["volumes"]


@pytest.mark.unit
def test_review_keeps_its_session_secret_on_its_volume(local: dict[str, Any]) -> None:
    # Without a lasting secret every restart of the review container would log every inspector out.
    review = local["services"]["review"]
    command = review["command"]
    secret = Path(command[command.index("--session-secret-file") + 1])
    sources = {v.split(":")[1]: v.split(":")[0] for v in review["volumes"]}  # by mount target
    assert sources[str(secret.parent)] in local["volumes"], "the secret must live on a named volume"
    assert "PARTCHECK_REVIEW_SESSION_SECRET" not in review["environment"]


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


@pytest.mark.unit
def test_moto_health_check_waits_out_a_long_restore(local: dict[str, Any]) -> None:
    # moto opens its port after restoring every stored object (~3 ms each): 100,000 objects take minutes,
    # and bootstrap (service_healthy) and everything after it would never start if moto turned unhealthy.
    health = local["services"]["moto"]["healthcheck"]
    assert _seconds(health["start_period"]) >= 600
    assert _seconds("1m30s") == 90


@pytest.mark.unit
def test_aws_file_requires_its_settings_and_never_points_at_moto() -> None:
    with pytest.raises(compose_check.ComposeError) as missing:
        compose_check.check(COMPOSE_AWS, {})
    for name in AWS_ENV:
        assert f"{name}: set {name}" in str(missing.value)
    doc = compose_check.check(COMPOSE_AWS, AWS_ENV)
    assert set(doc["services"]) == {"predict", "router", "review", "agent"}
    text = str(doc)
    assert "moto" not in text
    assert "ENDPOINT_URL" not in text
    assert (
        doc["services"]["router"]["environment"]["PARTCHECK_ROUTER_PREDICTION_BUCKET"]
        == AWS_ENV["PARTCHECK_PREDICTION_BUCKET"]
    )


@pytest.mark.unit
def test_interpolation_follows_compose_rules() -> None:
    missing: list[str] = []
    env = {"SET": "x", "EMPTY": ""}
    got = compose_check.interpolate(
        ["${SET:-d}", "${EMPTY:-d}", "${EMPTY-d}", "${UNSET-d}", "$$HOME", "${SET:+alt}", "${EMPTY:?no}"],
        env,
        missing,
    )
    assert got == ["x", "d", "", "d", "$HOME", "alt", ""]
    assert missing == ["EMPTY: no"]


@pytest.mark.unit
def test_images_are_multi_stage_pinned_and_non_root(local: dict[str, Any]) -> None:
    dockerfiles = {dockerfile_of(s) for s in local["services"].values()} - {None}
    assert len(dockerfiles) == 5
    for path in dockerfiles:
        assert path is not None
        text = path.read_text()
        bases = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
        assert len(bases) >= 2, f"{path}: single stage"
        for base in bases:
            tag = base.partition(":")[2]
            assert tag not in {"", "latest"}, f"{path}: unpinned {base}"
            assert any(c.isdigit() for c in tag), f"{path}: unpinned {base}"
        users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
        assert users, f"{path}: no USER"
        assert users[-1].split(":")[0] not in {"0", "root"}, f"{path}: runs as root"
        assert "--constraint constraints.txt" in text, f"{path}: unpinned Python packages"


@pytest.mark.unit
def test_predict_image_has_no_torch_and_lambda_commands_match_the_template() -> None:
    predict = (ROOT / "services" / "predict" / "Dockerfile").read_text()
    assert '".[predict,lambda]"' in predict
    assert "COPY models/ /opt/partcheck/models/" in predict
    constraints = (ROOT / "deploy" / "constraints.txt").read_text().split()
    assert not any(c.startswith(("torch==", "torchvision==")) for c in constraints)
    assert any(c.startswith("onnxruntime==") for c in constraints)
    assert any(c.startswith("awslambdaric==") for c in constraints)
    template = load_template()["Resources"]
    for service in ("predict", "router"):
        dockerfile = (ROOT / "services" / service / "Dockerfile").read_text()
        handler = f"services.{service}.handler.lambda_handler"
        assert f'CMD ["/opt/venv/bin/python", "-m", "awslambdaric", "{handler}"]' in dockerfile
        config = template[f"{service.capitalize()}Function"]["Properties"]["ImageConfig"]
        assert config == {"EntryPoint": ["/opt/venv/bin/python", "-m", "awslambdaric"], "Command": [handler]}
        assert importlib.util.find_spec(f"services.{service}.handler") is not None


@pytest.mark.unit
def test_model_path_of_the_image_is_the_template_default() -> None:
    env = dockerfile_env(ROOT / "services" / "predict" / "Dockerfile")
    default = load_template()["Parameters"]["ModelPath"]["Default"]
    assert env["PARTCHECK_PREDICT_MODEL_PATH"] == default
    assert default.startswith("/opt/partcheck/models/")


# ---------------------------------------------------------------- the services as local processes


@dataclass
class Proc:
    """One compose service running as a local process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    healthcheck: list[str] | None
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} ({' '.join(self.argv[2:])}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def healthy(self) -> bool:
        assert self.healthcheck, self.name
        result = subprocess.run(self.healthcheck, env=self.env, cwd=self.cwd, capture_output=True, timeout=30)
        return result.returncode == 0

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log:
            self.log.close()


class LocalStack:
    """Turns compose services into local processes: container ports to free ports, mounts to folders."""

    def __init__(self, doc: dict[str, Any], workdir: Path) -> None:
        self.services: dict[str, Any] = doc["services"]
        self.workdir = workdir
        # container port -> local port, per service that publishes one
        self.ports = {
            name: (int(s["ports"][0].rsplit(":", 1)[1]), free_port())
            for name, s in self.services.items()
            if s.get("ports")
        }
        self.procs: dict[str, Proc] = {}

    def mounts(self, name: str) -> dict[str, Path]:
        service = self.services[name]
        table = {**IMAGE_PATHS, "/var/lib/partcheck": self.workdir / f"{name}-home"}
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            table[target] = self.workdir / source.removeprefix("./").replace("/", "_")
        return table

    def rewrite(self, name: str, value: str) -> str:
        for other, (container, local_port) in self.ports.items():
            value = value.replace(f"http://{other}:{container}", f"http://127.0.0.1:{local_port}")
        if name in self.ports:
            container, local_port = self.ports[name]
            value = value.replace(f"127.0.0.1:{container}", f"127.0.0.1:{local_port}")
            if value == str(container):
                value = str(local_port)
        if value == "0.0.0.0":  # noqa: S104 - a container listens on all its interfaces; here loopback only
            value = "127.0.0.1"
        for target, local in sorted(self.mounts(name).items(), key=lambda kv: -len(kv[0])):
            if value == target or value.startswith(target + "/"):
                value = str(local) + value[len(target) :]
                break
        return value

    def argv(self, name: str, command: list[str]) -> list[str]:
        words = [self.rewrite(name, w) for w in command]
        if words[0] == "partcheck":
            return [sys.executable, "-m", "partcheck", *words[1:]]
        if words[0] in {"python", "/opt/venv/bin/python"}:
            return [sys.executable, *words[1:]]
        return words

    def proc(self, name: str) -> Proc:
        service = self.services[name]
        dockerfile = dockerfile_of(service) or next(
            dockerfile_of(s)
            for s in self.services.values()
            if s.get("image") == service["image"] and "build" in s
        )
        assert dockerfile is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PARTCHECK_"))}
        image_env = {
            k: v for k, v in dockerfile_env(dockerfile).items() if not k.startswith(("PATH", "PYTHON"))
        }
        for key, value in {**image_env, **service.get("environment", {})}.items():
            if value is not None:
                env[key] = self.rewrite(name, str(value))
        for local_dir in self.mounts(name).values():
            if local_dir.is_relative_to(self.workdir):
                local_dir.mkdir(parents=True, exist_ok=True)
        check = service.get("healthcheck", {}).get("test")
        return Proc(
            name,
            self.argv(name, service["command"]),
            env,
            self.workdir / f"{name}-home",
            self.argv(name, check[1:]) if check else None,
            self.workdir / f"{name}.log",
        )

    def order(self) -> list[str]:
        done: list[str] = []
        while len(done) < len(self.services):
            for name, service in self.services.items():
                if name not in done and all(d in done for d in service.get("depends_on", {})):
                    done.append(name)
        return done

    def wait(self, what: str, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for p in self.procs.values():
                if p.process and p.process.poll() not in (None, 0):
                    raise AssertionError(
                        f"{p.name} exited with {p.process.returncode} while waiting for {what}\n{self.logs()}"
                    )
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def up(self) -> None:
        for name in self.order():
            for dep, cond in self.services[name].get("depends_on", {}).items():
                dep_proc = self.procs[dep]
                if cond["condition"] == "service_healthy":
                    self.wait(f"{dep} healthy", dep_proc.healthy, 60)
                elif cond["condition"] == "service_completed_successfully":
                    self.wait(f"{dep} to finish", lambda p=dep_proc: p.process.poll() is not None, 60)
                    assert dep_proc.process is not None
                    assert dep_proc.process.returncode == 0, self.logs()
            self.procs[name] = self.proc(name)
            self.procs[name].start()

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs.values())

    def down(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()


@pytest.fixture
def stack(local: dict[str, Any], tmp_path: Path) -> Iterator[LocalStack]:
    running = LocalStack(local, tmp_path)
    try:
        yield running
    finally:
        running.down()


@pytest.mark.integration
def test_every_compose_command_runs_locally_and_sorts_an_image(
    stack: LocalStack, sample_images: dict[str, list[Path]]
) -> None:
    stack.up()
    for name in ("predict", "router", "review", "agent"):
        stack.wait(f"{name} healthy (its compose health check)", stack.procs[name].healthy, 90)
    assert (stack.mounts("review")["/var/lib/partcheck"] / "session-secret").read_text().strip()
    assert stack.procs["bootstrap"].process is not None
    assert stack.procs["bootstrap"].process.returncode == 0

    inbox = stack.mounts("agent")["/inbox"]
    image = sample_images["defect"][0]
    shutil.copy(image, inbox / image.name)

    moto_port = stack.ports["moto"][1]
    s3 = boto3.session.Session(region_name="eu-west-1").client(
        "s3", endpoint_url=f"http://127.0.0.1:{moto_port}"
    )

    def routed() -> list[str]:
        listing = s3.list_objects_v2(Bucket="partcheck-predictions").get("Contents", [])
        return [o["Key"] for o in listing if o["Key"].startswith(ROUTED)]

    stack.wait("the image sorted into the prediction bucket", routed, 120)
    (key,) = routed()
    assert key.endswith(image.name), key
    assert s3.get_object(Bucket="partcheck-predictions", Key=key)["Body"].read() == image.read_bytes()
    stack.wait(
        "the inbound bucket emptied",
        lambda: not s3.list_objects_v2(Bucket="partcheck-inbound").get("KeyCount"),
        30,
    )
    for name in ("predict", "router", "review", "agent", "moto"):
        proc = stack.procs[name]
        assert proc.process is not None
        assert proc.process.poll() is None, f"{name} died\n{stack.logs()}"
        assert proc.healthy(), f"{name} unhealthy\n{stack.logs()}"

    # `docker compose restart moto`: its state lives in the moto-data volume, so the sorted image stays.
    moto = stack.procs["moto"]
    moto.stop()
    moto.start()
    stack.wait("moto healthy again", moto.healthy, 60)

    def restored() -> bool:
        # moto answers while it still restores its snapshot; until then the bucket is missing.
        try:
            return routed() == [key]
        except s3.exceptions.NoSuchBucket:
            return False

    stack.wait("the sorted image back after the restart", restored, 30)


@pytest.mark.integration
def test_health_checks_fail_when_their_service_is_unreachable(moto: str) -> None:
    check = [sys.executable, str(ROOT / "deploy" / "healthcheck.py")]
    env = {**os.environ, "PARTCHECK_ROUTER_ENDPOINT_URL": moto, "PARTCHECK_PREDICT_ENDPOINT_URL": moto}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*check, *args], env=env, capture_output=True, text=True, timeout=60)

    closed = run("http", f"http://127.0.0.1:{free_port()}/api/health")
    assert closed.returncode == 1
    assert "unhealthy" in closed.stderr
    assert run("http", f"{moto}/moto-api/").returncode == 0
    no_queue = run("queue", "router")
    assert no_queue.returncode == 1
    assert "partcheck-predictions" in no_queue.stderr
    sqs = boto3.session.Session(region_name="eu-west-1").client("sqs", endpoint_url=moto)
    sqs.create_queue(QueueName="partcheck-predictions")
    assert run("queue", "router").returncode == 0
    assert run("queue", "predict").returncode == 1  # its uploads queue is still missing
    sqs.create_queue(QueueName="partcheck-uploads")
    assert run("queue", "predict").returncode == 0
    assert run("queue", "review").returncode == 1
    assert run("bogus").returncode == 2


@pytest.mark.unit
@pytest.mark.parametrize(
    ("service", "message"),
    [
        ({"image": "x", "depends_on": ["nowhere"]}, "depends on unknown service 'nowhere'"),
        ({"image": "x", "restart_policy": "always"}, "restart_policy"),
        ({"build": {"context": ".", "dockerfile": "no/Dockerfile"}}, "no/Dockerfile"),
    ],
)
def test_compose_check_reports_broken_files(tmp_path: Path, service: dict[str, Any], message: str) -> None:
    path = tmp_path / "compose.yml"
    path.write_text(yaml.safe_dump({"services": {"a": service}}))
    with pytest.raises(compose_check.ComposeError, match=message):
        compose_check.check(path, {})
