"""Small builders for spreadsheet formula text (without the leading '=').

Only functions every spreadsheet engine has: SUMPRODUCT, SUM, MAX, MIN, EXP, LN, IF, TANH, MATCH, AVERAGE.
"""

from fractions import Fraction

from cnncalc.errors import CnncalcError


def number(x):
    """A number as formula text: 8 -> '8', 0.125 -> '0.125', exact to float64 (repr round-trips)."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def sumproduct(a, b):
    return f"SUMPRODUCT({a},{b})"


def add(terms):
    """'a+b+c'; a term that starts with '-' is joined without a '+'."""
    out = ""
    for t in terms:
        out += t if (not out or t.startswith("-")) else "+" + t
    return out


def products(pairs):
    """'a1*b1+a2*b2+...' for when a window is not one contiguous range (dilated kernels)."""
    return add(f"{a}*{b}" for a, b in pairs)


def scale(ref, factor):
    """The scaled-input step: 'B4/8' for factor 1/8, 'B4*0.5' otherwise; factor 1 is just the reference."""
    frac = Fraction(factor).limit_denominator(1_000_000)
    if float(frac) == float(factor) and frac.numerator == 1:
        return ref if frac.denominator == 1 else f"{ref}/{frac.denominator}"
    return f"{ref}*{number(factor)}"


def activation(name, x):
    """Element-wise activation of the cell x (softmax is not element-wise: see softmax_* below)."""
    if name == "linear":
        return x
    elif name == "relu":
        return f"MAX(0,{x})"
    elif name == "sigmoid":
        return f"1/(1+EXP(-{x}))"
    elif name == "tanh":
        return f"TANH({x})"
    else:
        raise CnncalcError(f"No formula for activation. Expected linear, relu, sigmoid, tanh or softmax. Received {name!r}")


def softmax_max(span):
    return f"MAX({span})"


def softmax_exp(z, m):
    return f"EXP({z}-{m})"


def softmax_sum(span):
    return f"SUM({span})"


def softmax_prob(e, s):
    return f"{e}/{s}"


def argmax(span):
    """0-based index of the first largest value, as numpy's argmax and Keras's predicted class."""
    return f"MATCH(MAX({span}),{span},0)-1"
