"""The one exception for input that cannot be used; every layer raises it, the CLI turns it into one line."""

from __future__ import annotations


class DataError(ValueError):
    """Input data or mapping that cannot be used; the message names the file, column, row or value."""
