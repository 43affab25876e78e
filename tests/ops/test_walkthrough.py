"""The README's walkthrough works when pasted as written, against a live scripts/run; and
the README names every management command."""

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.run_command import REPO_ROOT, RunCommand, drop_database

README = REPO_ROOT / "README.md"


def walkthrough() -> str:
    """The shell blocks of the README's "Walkthrough" section, in order."""
    text = README.read_text()
    section = text.split("\n### Walkthrough\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "no ```sh block under ### Walkthrough"
    return "\n".join(blocks)


@pytest.fixture
def run_command(tmp_path: Path) -> Iterator[RunCommand]:
    command = RunCommand(tmp_path, database=f"oms_prod_walk_{uuid.uuid4().hex[:8]}")
    try:
        yield command.start()
    finally:
        started = command.descendants()
        command.stop()
        command.kill_leftovers(started)
        drop_database(command.database)


def test_the_readme_walkthrough_runs_as_written_against_scripts_run(run_command):
    # Given the walkthrough, pointed at this run's ports instead of the default ones
    script = walkthrough()
    assert "127.0.0.1:8000" in script
    assert "127.0.0.1:8420" in script
    script = script.replace("127.0.0.1:8000", f"127.0.0.1:{run_command.port}").replace(
        "127.0.0.1:8420", f"127.0.0.1:{run_command.stripe_port}"
    )

    # When bash runs it, stopping at the first failing command
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env=run_command.env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    # Then every step did what the README says it does
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert '"sku":"MUG-LOGO"' in lines[0]  # the products
    assert lines[1].startswith("pending_payment 20")  # held until reservation_expires_at
    assert lines[2] == "cancelled"
    assert "delivered" in lines  # followed to the end by the fake warehouse
    assert "delivered 500" in lines  # the first, partial refund
    assert "refunded refunded" in lines  # the order and its payment after the rest
    assert any('"code":"payment_declined"' in line for line in lines)
    assert "requires_capture" in lines  # 3-D Secure passed at the fake provider
    assert any(line.startswith('{"sku":"MUG-LOGO","warehouse":"berlin"') for line in lines)
    assert '"results":[' in lines[-1]  # the storefront sees alice's orders


def test_the_readme_names_every_management_command():
    commands = sorted(
        path.stem
        for path in REPO_ROOT.glob("*/management/commands/*.py")
        if not path.name.startswith("_")
    )
    assert "seed_demo" in commands
    text = README.read_text()
    assert [name for name in commands if f"manage.py {name}" not in text] == []
