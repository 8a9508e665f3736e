"""Small builders for spreadsheet formula text (without the leading '=').

Only functions every spreadsheet engine has: + - * / ^, SUMPRODUCT, SUM, AVERAGE, MAX, MIN, ABS, EXP, LN,
SQRT, TANH, ERF, IF, MATCH (and for gradients ERFC, AND, OR, SIGN, COUNTIF). `x` below is the text of one cell reference, such as 'B4' or "'Sample 1'!B4".
"""

from fractions import Fraction
import math

from cnncalc.engine import ops
from cnncalc.errors import CnncalcError


def number(x):
    """A number as formula text: 8 -> '8', 0.125 -> '0.125', exact to float64 (repr round-trips)."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def sumproduct(a, b):
    """'SUMPRODUCT(G4:I6,Weights!$B$6:$D$8)'; two single cells are one product, 'U4*Weights!$B$17' (a ':' marks a
    range: Excel forbids it in a sheet name), which every engine reads (pycel fails on a SUMPRODUCT of two cells)."""
    if ":" not in a and ":" not in b:
        return f"{a}*{b}"
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


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras relu: 'MAX(0,x)'; with options 'IF(x>threshold,MIN(x,max_value),negative_slope*(x-threshold))'."""
    if negative_slope == 0 and threshold == 0:
        return f"MAX(0,{x})" if max_value is None else f"MIN(MAX(0,{x}),{number(max_value)})"
    top = x if max_value is None else f"MIN({x},{number(max_value)})"
    if negative_slope == 0:
        below = "0"
    elif threshold == 0:
        below = f"{number(negative_slope)}*{x}"
    else:
        below = f"{number(negative_slope)}*({x}-{number(threshold)})"
    return f"IF({x}>{number(threshold)},{top},{below})"


def elu(x, alpha=1.0):
    """'IF(x>0,x,alpha*(EXP(x)-1))'."""
    below = f"EXP({x})-1" if alpha == 1 else f"{number(alpha)}*(EXP({x})-1)"
    return f"IF({x}>0,{x},{below})"


def gelu(x, approximate=False):
    """Exact 'x/2*(1+ERF(x/SQRT(2)))' (Keras's "gelu"), or the tanh approximation."""
    if approximate:
        return f"0.5*{x}*(1+TANH({number(ops.GELU_TANH_C)}*({x}+0.044715*{x}^3)))"
    return f"0.5*{x}*(1+ERF({x}/SQRT(2)))"


def hard_sigmoid(x):
    """Keras 3's hard_sigmoid, relu6(x + 3) / 6."""
    return f"MIN(MAX({x}+3,0),6)/6"


ELEMENTWISE = {
    "linear": lambda x: x,
    "relu": relu,
    "relu6": lambda x: relu(x, max_value=6),
    "leaky_relu": lambda x: relu(x, negative_slope=0.2),  # the activation's default slope; LeakyReLU's layer is 0.3
    "elu": elu,
    "selu": lambda x: f"{number(ops.SELU_SCALE)}*{elu(x, ops.SELU_ALPHA)}",
    "gelu": gelu,
    "gelu_tanh": lambda x: gelu(x, approximate=True),
    "sigmoid": lambda x: f"1/(1+EXP(-{x}))",
    "hard_sigmoid": hard_sigmoid,
    "hard_silu": lambda x: f"{x}*{hard_sigmoid(x)}",
    "tanh": lambda x: f"TANH({x})",
    "softplus": lambda x: f"MAX({x},0)+LN(1+EXP(-ABS({x})))",
    "softsign": lambda x: f"{x}/(ABS({x})+1)",
    "silu": lambda x: f"{x}/(1+EXP(-{x}))",
    "exponential": lambda x: f"EXP({x})",
}


def activation(name, x):
    """Element-wise activation of the cell x, by Keras 3's name (softmax and log_softmax are vector steps: see below)."""
    if name in ops.VECTOR_ACTIVATIONS:
        raise CnncalcError(
            f"No element-wise formula for {name}. Expected an element-wise activation: {name} needs the whole vector, "
            f"so a sheet computes it in steps (softmax_max, softmax_exp, softmax_sum, then {'softmax_prob' if name == 'softmax' else 'log_softmax'}). "
            f"Received {name!r}"
        )
    try:
        build = ELEMENTWISE[name]
    except (KeyError, TypeError):
        raise CnncalcError(f"No formula for activation. Expected one of {', '.join(ELEMENTWISE)}, softmax or log_softmax. Received {name!r}") from None
    return build(x)


def relu_backward(g, z, negative_slope=0.0, max_value=None, threshold=0.0):
    """dL/dz of relu from dL/da = g, as ops.relu_derivative (slope 0 at the kinks): 'IF(z>0,g,0)'; with options
    'g*(IF(z>threshold,1,0)*IF(z<max_value,1,IF(z=max_value,0.5,0))+negative_slope*IF(z<threshold,1,0))'."""
    if negative_slope == 0 and max_value is None and threshold == 0:
        return f"IF({z}>0,{g},0)"
    if negative_slope != 0 and max_value is None and threshold == 0:
        return f"IF({z}>=0,{g},{g}*{number(negative_slope)})"
    if threshold == 0 and max_value == 6 and negative_slope == 0:  # relu6: jax.nn.relu6's slope, 0 at both corners
        return f"IF(AND({z}>0,{z}<6),{g},0)"
    slope = f"IF({z}>{number(threshold)},1,0)"
    if max_value is not None:
        slope += f"*IF({z}<{number(max_value)},1,IF({z}={number(max_value)},0.5,0))"
    if negative_slope != 0:
        slope += f"+{number(negative_slope)}*IF({z}<{number(threshold)},1,0)"
    return f"{g}*({slope})"


def _hard_sigmoid_slope(z):
    return f"IF(AND({z}+3>0,{z}+3<6),{number(1 / 6)},0)"


def _sigmoid(z):
    return f"1/(1+EXP(-{z}))"


SLOPES = {  # d(activation)/dz at the pre-activation z with output a (cells), as engine/ops.py's <name>_derivative
    "elu": lambda z, a: f"IF({z}>0,1,EXP({z}))",
    "selu": lambda z, a: f"{number(ops.SELU_SCALE)}*IF({z}>0,1,{number(ops.SELU_ALPHA)}*EXP({z}))",
    "gelu": lambda z, a: f"0.5*ERFC(-{z}*{number(math.sqrt(0.5))})+{z}*EXP(-0.5*{z}*{z})/{number(math.sqrt(2 * math.pi))}",
    "gelu_tanh": lambda z, a: (lambda t: f"0.5*(1+{t})+0.5*{z}*(1-{t}*{t})*{number(ops.GELU_TANH_C)}*(1+3*0.044715*{z}^2)")(
        f"TANH({number(ops.GELU_TANH_C)}*({z}+0.044715*{z}^3))"),
    "sigmoid": lambda z, a: f"{a}*(1-{a})",
    "hard_sigmoid": lambda z, a: _hard_sigmoid_slope(z),
    "hard_silu": lambda z, a: f"MIN(MAX({z}+3,0),6)/6+{z}*{_hard_sigmoid_slope(z)}",
    "tanh": lambda z, a: f"1-{a}*{a}",
    "softplus": lambda z, a: f"EXP({z}-{a})",
    "softsign": lambda z, a: f"1/(ABS({z})+1)^2",
    "silu": lambda z, a: f"{_sigmoid(z)}+{z}*{_sigmoid(z)}*(1-{_sigmoid(z)})",
    "exponential": lambda z, a: a,
}


def activation_backward(name, g, z, a):
    """dL/dz of element-wise activation `name` from dL/da = g, at pre-activation z with output a (cell references):
    'g' for linear, the relu family as IFs, else 'g*(slope)'."""
    if name == "linear":
        return g
    relus = {"relu": {}, "relu6": {"max_value": 6}, "leaky_relu": {"negative_slope": 0.2}}
    if name in relus:
        return relu_backward(g, z, **relus[name])
    try:
        return f"{g}*({SLOPES[name](z, a)})"
    except KeyError:
        raise CnncalcError(f"No gradient formula for activation {name!r}. Expected linear, {', '.join(relus)} or "
                           f"{', '.join(SLOPES)}") from None


def batch_normalization(x, mean, variance, epsilon, gamma=None, beta=None):
    """'(x-mean)/SQRT(variance+epsilon)*gamma+beta'; gamma and beta are left out when the layer has none."""
    text = f"({x}-{mean})/SQRT({variance}+{number(epsilon)})"
    if gamma is not None:
        text += f"*{gamma}"
    return text if beta is None else f"{text}+{beta}"


def rescale(x, scale_, offset):
    """Keras Rescaling: 'x*scale+offset' ('x*scale' when the offset is 0)."""
    return add([f"{x}*{number(scale_)}"] + ([number(offset)] if offset != 0 else []))


def softmax_max(span):
    return f"MAX({span})"


def softmax_exp(z, m):
    return f"EXP({z}-{m})"


def softmax_sum(span):
    return f"SUM({span})"


def softmax_prob(e, s):
    return f"{e}/{s}"


def log_softmax(z, m, s):
    """The last log_softmax step, as Keras computes it: (z - m) - LN(s), with m = MAX(z) and s = SUM(EXP(z - m))."""
    return f"{z}-{m}-LN({s})"


def argmax(span):
    """0-based index of the first largest value, as numpy's argmax and Keras's predicted class."""
    return f"MATCH(MAX({span}),{span},0)-1"
