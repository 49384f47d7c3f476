"""Errors that carry a message meant for a person, not a traceback."""


class InputError(ValueError):
    """Input that cannot be used, with a message naming what is wrong and where.

    The CLI prints the message on one line and exits non-zero; Lambda handlers
    record it as a rejection instead of retrying.
    """
