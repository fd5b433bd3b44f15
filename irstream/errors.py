"""Errors a user can cause.  The CLI prints their message as one line and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """A problem with an input the user gave us (a path, a config, a weights file).

    The message names the input and says what to do; it is shown without a traceback.
    key: the dotted pipeline key the input came from ("model.device"), when there is one;
    the message then starts with it as the TOML names it ("[model] device"), and the CLI
    adds the flag that sets it.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        if key:
            section, _, name = key.partition(".")
            message = f"[{section}] {name} {message}"
        super().__init__(message)
