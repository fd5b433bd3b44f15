"""Errors a user can cause.  The CLI prints their message as one line and exits non-zero."""


class UserError(Exception):
    """A problem with an input the user gave us (a path, a config, a weights file).

    The message names the input and says what to do; it is shown without a traceback.
    """
