"""The code under test: the working tree, or a commit exported with git archive."""

import io
import subprocess
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def git(*arguments: str) -> str:
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", *arguments],  # noqa: S607 - git from PATH, as a developer runs it
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def source_export(ref: str, target: Path) -> str:
    """Extract the commit's tree into target (read-only for the repository). Return its id.

    The export leaves out this package: the code under test comes first on sys.path, and
    the load generator process must import this run's benchmarks, not the commit's.
    """
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    archive = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", "archive", "--format=tar", commit, "--", ".", ":(exclude)benchmarks"],  # noqa: S607
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return commit
