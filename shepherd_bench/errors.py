"""User errors: bad input whose message names the fix. The CLI prints them without a traceback."""


class UserError(Exception):
    """Raised for a mistake the user can fix (unknown name, bad flag, missing file or key)."""
