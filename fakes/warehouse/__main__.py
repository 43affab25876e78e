"""``python -m fakes.warehouse``: see ``fakes.warehouse.cli``."""

import sys

from fakes.warehouse.cli import main

sys.exit(main())
