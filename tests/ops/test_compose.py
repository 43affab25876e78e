"""docker/compose.yaml and docker/Dockerfile, checked without Docker (no image can be
pulled or built here): everything the stack names exists in the repository, every
environment variable is read by the code and documented in the README, every service
has a healthcheck, and the production image never installs the dev extra."""

import importlib.util
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# The services that run an oms image (built here), not a stock one (postgres, redis).
OMS_SERVICES = {name: service for name, service in SERVICES.items() if "build" in service}
# Read by libraries, not by a line of oms: Django, prometheus_client.
READ_BY_LIBRARIES = {"DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR"}
MANAGEMENT_COMMANDS = {path.stem for path in ROOT.glob("*/management/commands/[!_]*.py")}


def dockerfile_stages() -> dict[str, tuple[str, list[str]]]:
    """Each stage of docker/Dockerfile: name -> (the stage it is built FROM, its lines)."""
    stages: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, flags=re.IGNORECASE)
        if match:
            current = []
            stages[match[2]] = (match[1], current)
        elif line.strip() and not line.lstrip().startswith("#"):
            current.append(line.strip())
    return stages


def stage_lines(name: str) -> list[str]:
    """The stage's lines and those of every stage it is built from, oldest first."""
    stages = dockerfile_stages()
    lines: list[str] = []
    while name in stages:
        parent, own = stages[name]
        lines = own + lines
        name = parent
    return lines


def commands_of(service: dict[str, Any]) -> list[list[str]]:
    """The service's command and its healthcheck's, as argument lists."""
    found = []
    if "command" in service:
        found.append(list(service["command"]))
    test = (service.get("healthcheck") or {}).get("test")
    if test and test[0] == "CMD":
        found.append(list(test[1:]))
    elif test and test[0] == "CMD-SHELL":
        found.append(shlex.split(test[1]))
    return found


def module_exists(dotted: str) -> bool:
    """Whether an oms module (``pkg.mod`` or ``pkg.mod:attr``) is in the repository."""
    module, _, attr = dotted.partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.startswith(str(ROOT)):
        return False
    if attr:
        source = Path(spec.origin).read_text()
        return re.search(rf"^(class|def) {attr}\b|^{attr} =", source, re.M) is not None
    return True


def check_arguments(arguments: list[str], where: str) -> list[str]:
    """What the arguments name that does not exist: scripts, modules, commands, code."""
    problems = []
    program = arguments[0]
    if program.startswith("docker/"):
        script = ROOT / program
        if not script.is_file() or not os.access(script, os.X_OK):
            problems.append(f"{where}: {program} is not an executable file in the repository")
    for flag, value in zip(arguments, arguments[1:], strict=False):
        if flag in {"-m", "--include", "--scheduler", "-S", "-A"} and not module_exists(value):
            problems.append(f"{where}: module {value} ({flag}) is not in the repository")
        if flag == "manage.py" and value not in MANAGEMENT_COMMANDS | {"migrate", "collectstatic"}:
            problems.append(f"{where}: manage.py {value} is no command")
        if flag == "-c" and program == "python":
            compile(value, where, "exec")
    for argument in arguments:
        # An application object (gunicorn config.asgi:application) or scheduler class.
        if re.fullmatch(r"[a-z_]+(\.[a-z_]+)*:[A-Za-z_]+", argument) and not module_exists(
            argument
        ):
            problems.append(f"{where}: {argument} is not in the repository")
    return problems


def script_arguments(script: Path) -> list[list[str]]:
    """The commands a docker/*.sh script runs (continuations joined), as argument lists."""
    text = script.read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        if words and words[0] == "exec":
            words = words[1:]
        if words:
            commands.append(words)
    return commands


def readme_configuration_variables() -> set[str]:
    """Every variable named in the first column of the README's configuration tables."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split(" | ")[0]))
    return names


def variables_read_by_the_code() -> str:
    """The text of everything that reads the environment: settings, apps, start scripts."""
    sources = [*ROOT.glob("config/**/*.py"), *ROOT.glob("core/**/*.py"), ROOT / "gunicorn.conf.py"]
    sources += [*DOCKER.glob("*.sh"), ROOT / "scripts" / "run"]
    return "\n".join(path.read_text() for path in sources)


def compose_variables() -> dict[str, set[str]]:
    """Variable name -> the services whose oms containers get it, and ${...} interpolations."""
    found: dict[str, set[str]] = {}
    for name, service in OMS_SERVICES.items():
        for variable in service.get("environment") or {}:
            found.setdefault(variable, set()).add(name)
    text = (DOCKER / "compose.yaml").read_text()
    for variable in re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text):
        found.setdefault(variable, set()).add("${...}")
    return found


def test_every_service_has_a_healthcheck_and_one_shots_say_so():
    for name, service in SERVICES.items():
        healthcheck = service.get("healthcheck")
        assert healthcheck, f"{name} has no healthcheck"
        if healthcheck.get("disable"):
            # Only a one-shot job, which the others wait on to complete, may have none.
            waited_on = any(
                (other.get("depends_on") or {}).get(name, {}).get("condition")
                == "service_completed_successfully"
                for other in SERVICES.values()
            )
            assert waited_on or service.get("restart") == "no", name
        else:
            assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"}, name
    for name in ("worker", "beat"):
        assert SERVICES[name]["healthcheck"]["test"][1:4] == ["python", "-m", "core.heartbeat"]
    web_check = " ".join(SERVICES["web"]["healthcheck"]["test"])
    assert "/health/ready" in web_check or "/health/live" in web_check


def test_heartbeat_files_are_written_where_the_healthchecks_read_them():
    worker, beat = SERVICES["worker"], SERVICES["beat"]
    assert worker["environment"]["WORKER_HEARTBEAT_FILE"] == worker["healthcheck"]["test"][4]
    assert beat["environment"]["BEAT_HEARTBEAT_FILE"] == beat["healthcheck"]["test"][4]
    assert "--include core.heartbeat" in (DOCKER / "start-worker.sh").read_text()
    assert "--scheduler core.heartbeat:HeartbeatScheduler" in (DOCKER / "start-beat.sh").read_text()


@pytest.mark.parametrize("name", sorted(OMS_SERVICES))
def test_every_build_names_an_existing_dockerfile_target(name):
    build = OMS_SERVICES[name]["build"]
    assert (DOCKER / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).is_file()
    assert build["target"] in dockerfile_stages()


def test_every_command_script_and_module_the_stack_names_exists():
    problems = []
    for name, service in OMS_SERVICES.items():
        for arguments in commands_of(service):
            problems += check_arguments(arguments, f"service {name}")
    for script in sorted(DOCKER.glob("*.sh")):
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        for arguments in script_arguments(script):
            problems += check_arguments(arguments, script.name)
    assert problems == []


def test_every_environment_variable_is_read_by_the_code_and_documented():
    code = variables_read_by_the_code()
    documented = readme_configuration_variables()
    variables = compose_variables()
    assert variables, "no variables found: the parser is broken"
    unread = sorted(
        v
        for v in variables
        if v not in READ_BY_LIBRARIES
        and f'"{v}' not in code
        and f"${{{v}" not in code
        and f"${v}" not in code
    )
    undocumented = sorted(v for v in variables if v not in documented)
    assert (unread, undocumented) == ([], [])


def test_the_production_target_never_installs_the_dev_extra():
    production = stage_lines("production")
    installs = [line for line in production if "pip install" in line]
    assert installs, "the production target installs nothing?"
    for line in installs:
        assert "[dev]" not in line, line
        assert "localstripe" not in line, line
        assert "pytest" not in line, line
    assert any("collectstatic" in line for line in production)
    assert any(line.startswith("USER oms") for line in production)
    # The dev extra has a target of its own, which the demo's services build.
    assert any('".[dev]"' in line for line in stage_lines("dev"))
    demo = {name for name, service in SERVICES.items() if "demo" in service.get("profiles", [])}
    assert demo == {"fake-stripe", "fake-warehouse", "demo-setup"}
    assert {OMS_SERVICES[name]["build"]["target"] for name in demo} == {"dev"}
    assert {
        service["build"]["target"] for name, service in OMS_SERVICES.items() if name not in demo
    } == {"production"}


def test_the_build_context_leaves_out_local_state():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", ".git", "staticfiles", ".pytest_cache"} <= ignored


def test_the_demo_profile_sets_up_the_demo_with_the_script_scripts_run_uses():
    setup = SERVICES["demo-setup"]
    assert setup["command"] == ["docker/demo-setup.sh"]
    assert "docker/demo-setup.sh" in (ROOT / "scripts" / "run").read_text()
    environment = setup["environment"]
    assert environment["FAKE_STRIPE_WEBHOOK_URL"].endswith("/api/v1/payments/stripe/webhook/")
    assert environment["FAKE_WAREHOUSE_URL"].startswith("http://fake-warehouse:8430/")
    assert environment["STRIPE_API_BASE"].endswith("fake-stripe:8420}")
    warehouse = SERVICES["fake-warehouse"]["command"]
    assert warehouse[warehouse.index("--secret") + 1] == environment["FAKE_WAREHOUSE_SECRET"]
