"""Test utilities: fake provider processes, a fault-injecting proxy, their fixtures.

Test modules load the fixtures with ``pytest_plugins``; the modules are registered for
assertion rewriting first, because test modules also import from them directly.
"""

import pytest

pytest.register_assert_rewrite("tests.support.fake_stripe", "tests.support.fault_proxy")
