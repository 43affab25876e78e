"""A primary and a streaming replica of the test's own for the scale tests, migrated
and seeded once per module (tests.scale.seed)."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.scale.clusters import Cluster, manage


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def seeded(cluster: Cluster) -> dict[str, Any]:
    """Create, migrate and seed database `oms` on the primary; wait for the replica."""
    cluster.primary.sql("CREATE DATABASE oms")
    url = cluster.primary.url("oms")
    manage(url, "migrate", "--no-input", "-v", "0")
    out = manage(url, "shell", "-c", "from tests.scale.seed import main; main()")
    cluster.wait_for_replay()
    return dict(json.loads(out.strip().splitlines()[-1]))
