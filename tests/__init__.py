import pytest

# Support plugins that test modules also import directly get their asserts rewritten.
pytest.register_assert_rewrite("tests.support.webhook_receiver")
