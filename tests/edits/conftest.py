"""Order edits: DE and FR rates, the payment provider of tests/payments."""

from tests.payments.conftest import provider  # noqa: F401
from tests.pricing.conftest import de_rates  # noqa: F401
