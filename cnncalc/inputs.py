"""Reading the numbers a model is fed: the input scale, and (later) input files."""

from fractions import Fraction

from cnncalc.errors import CnncalcError


def parse_scale(text):
    """'1/8' -> 0.125, '0.5' -> 0.5, None -> 1.0; the input step is raw x scale."""
    if text is None:
        return 1.0
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise CnncalcError(f"Invalid value for --scale. Expected a number or a fraction such as 1/255. Received {text!r}") from None
    if not value or value != value or abs(value) == float("inf"):
        raise CnncalcError(f"Invalid value for --scale. Expected a finite non-zero number. Received {text!r}")
    return value
