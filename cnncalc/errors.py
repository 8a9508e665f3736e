"""The one exception type for a user's mistake: the CLI prints it as one line and exits 2."""


class CnncalcError(Exception):
    """A problem with what the user gave us (a file, an argument), not a bug in cnncalc.

    The message says what is wrong, what was expected and what was received.
    """


class RecalcUnavailable(CnncalcError):
    """No spreadsheet engine (LibreOffice) to recalculate with."""
