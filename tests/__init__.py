"""Veivis's tests. The audit hook of tests/shipped.py is installed first, before any of the
bot's modules is imported."""

from tests import shipped  # noqa: F401
