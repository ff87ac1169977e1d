"""The one error type for bad input data or settings (the CLI prints it and exits 2)."""


class InputError(ValueError):
    """Bad input data or settings; the message says where and what to do."""
