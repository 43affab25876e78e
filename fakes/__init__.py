"""Stand-ins for external services, for development and tests only.

Each fake runs as its own process (``python -m fakes.<name>``); app code never imports
this package.
"""
