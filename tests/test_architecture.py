"""The code keeps the shape docs/architecture.md and the README describe: one owner per
order transition, every use case module documented, the error table complete."""

import ast
import importlib
import inspect
import re
from pathlib import Path

from core.api.exceptions import _API_EXCEPTION_CODES
from core.errors import DomainError
from orders.states import TRANSITIONS

ROOT = Path(__file__).resolve().parent.parent
APPS = [
    "core",
    "access",
    "inventory",
    "orders",
    "pricing",
    "payments",
    "fulfilment",
    "flows",
    "notifications",
    "events",
]
# Modules of flows/ that are adapters or helpers, not use cases.
NOT_USE_CASES = {
    "__init__",
    "apps",
    "admin",
    "handlers",
    "tasks",
    "lock_objects",
    "metrics",
    "checkout_sql",  # the SQL of place's single-statement checkout
    "outcome_sql",  # the SQL of payment_outcomes' single-statement confirmation
}
# Errors raised only inside workers (the email outbox handlers): never an API answer.
WORKER_ONLY_ERRORS = {"EmailNotSendable", "EmailSendFailed", "EmailSendInProgress"}


def _app_sources() -> list[Path]:
    return [
        path
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts
    ]


def _transitions_taken(path: Path) -> set[str]:
    """Names passed as transition="..." to order_transition_locked (or its in-memory
    form order_transition_planned) in this file."""
    taken = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name not in ("order_transition_locked", "order_transition_planned"):
            continue
        for keyword in node.keywords:
            if keyword.arg == "transition" and isinstance(keyword.value, ast.Constant):
                taken.add(keyword.value.value)
    return taken


def test_each_order_transition_is_taken_by_exactly_one_use_case_module():
    owners: dict[str, set[str]] = {name: set() for name in TRANSITIONS}
    for path in _app_sources():
        for transition in _transitions_taken(path):
            owners.setdefault(transition, set()).add(str(path.relative_to(ROOT)))

    assert {name: len(modules) for name, modules in owners.items()} == {
        name: 1 for name in TRANSITIONS
    }, owners
    for name, modules in owners.items():
        (module,) = modules
        assert module.startswith("flows/"), f"{name} is taken outside the use cases: {module}"


def test_only_the_orders_app_runs_the_order_state_machine():
    # Nobody calls Order's transition methods or writes its status but orders.services.
    pattern = re.compile(r"\border\.(" + "|".join(TRANSITIONS) + r")\(\)")
    offenders = [
        str(path.relative_to(ROOT))
        for path in _app_sources()
        if pattern.search(path.read_text()) and path != ROOT / "orders" / "services.py"
    ]
    assert offenders == []


def test_every_use_case_module_is_in_the_architecture_table():
    documented = set(
        re.findall(r"`flows/([a-z_]+)\.py`", (ROOT / "docs/architecture.md").read_text())
    )
    modules = {path.stem for path in (ROOT / "flows").glob("*.py")} - NOT_USE_CASES

    assert modules - documented == set(), "use case modules missing from docs/architecture.md"
    assert documented - modules == set(), "docs/architecture.md lists modules that do not exist"


def _domain_error_codes() -> set[str]:
    for app in APPS:
        if (ROOT / app / "errors.py").exists():
            importlib.import_module(f"{app}.errors")
    codes = set()
    pending = [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is DomainError or cls.__name__ in WORKER_ONLY_ERRORS:
            continue
        assert inspect.getmodule(cls).__name__.endswith(".errors"), (
            f"{cls.__name__} is defined in {cls.__module__}: errors live in their app's errors.py"
        )
        codes.add(cls.code)
    return codes


def test_readme_error_table_lists_exactly_the_codes_that_exist():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Errors", 1)[1]
    table = section.split("\n## ", 1)[0].split("\n### ", 1)[0]
    documented = {
        code
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| status")
        for code in re.findall(r"`([a-z_]+)`", line.split("|")[2])
    }
    existing = (
        _domain_error_codes()
        | {code for _cls, code, _title in _API_EXCEPTION_CODES}
        | {"validation_error", "internal_error"}
    )

    assert documented == existing
