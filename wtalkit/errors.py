"""User-facing errors.

Library code raises :class:`WtalError` for anything caused by the user's input
(bad file, wrong dimension, unknown class, ...). The CLI turns it into a
one-line message and a non-zero exit; it never prints a traceback for it.
"""


class WtalError(Exception):
    """An error caused by user input; its message is one line, shown as is."""
