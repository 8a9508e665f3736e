"""The one exception type for a user's mistake: the CLI prints it as one line and exits 2."""


class CnncalcError(Exception):
    """A problem with what the user gave us (a file, an argument), not a bug in cnncalc.

    The message says what is wrong, what was expected and what was received.
    """


class RecalcUnavailable(CnncalcError):
    """No spreadsheet engine (LibreOffice) to recalculate with."""


SHOWN_LIMIT = 200  # characters of a received value shown in a message; the rest is elided


def shown(text, limit=SHOWN_LIMIT):
    """Text from a file or the command line, safe to print on one terminal line.

    Control characters (C0, DEL, C1 — ESC sequences can retitle or clear a terminal) and line breaks are
    shown as escapes, and a long value is cut in the middle: `shown("a\\x1b[2Jb")` -> 'a\\x1b[2Jb'.
    """
    text = str(text)
    out = "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in text)
    if len(out) > limit:
        half = (limit - 5) // 2
        out = f"{out[:half]} ... {out[-half:]}"
    return out


def quoted(text, limit=SHOWN_LIMIT):
    """A file name or value quoted for a one-line message: quoted('my file\\n.npy') -> "'my file\\\\n.npy'"."""
    return "'" + shown(text, limit).replace("'", "\\'") + "'"
