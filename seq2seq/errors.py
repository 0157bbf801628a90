"""The one exception type users see: a one-line message, no traceback."""


class UserError(Exception):
    """Bad input from the user (config, files, run directory). The CLI prints
    ``error: <message>`` on one line and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
