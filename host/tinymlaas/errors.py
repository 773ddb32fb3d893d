"""Errors shared across the package."""


class UserError(Exception):
    """An error caused by the user's input: the CLI prints it as one line and exits with status 2."""
