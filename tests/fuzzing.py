"""Shared by the fuzz tests: mutations of real files, a per-case time limit, and the counts the run prints.

A fuzz case passes when the code under test returns normally or raises CnncalcError (one line); any other
exception, a case that runs past its time limit, or a temporary file left behind fails it. The counts are
printed at the end of the run by the pytest_terminal_summary hook in conftest.py.
"""

import copy
import io
import json
import signal
import time
import warnings
import zipfile
from collections import Counter, defaultdict

from hypothesis import strategies as st

from cnncalc.errors import CnncalcError

# target -> Counter(tried=..., refused=..., wrapped=...); "wrapped" counts CnncalcErrors made by a catch-all
# from an unforeseen exception (their cause is attached): allowed, but each is a message that could be better.
COUNTS = defaultdict(Counter)
WRAPPED = defaultdict(list)  # cause type -> messages, for a look at what the catch-alls catch
CASE_SECONDS = 10  # a case slower than this is a hang
# Causes that mean a bug in cnncalc, not a strange file, even when a catch-all turned them into a CnncalcError.
BUGS = ("NameError", "AttributeError", "ImportError", "ModuleNotFoundError", "AssertionError", "UnboundLocalError", "RecursionError")


def record(target, tried, refused=0, wrapped=0):
    c = COUNTS[target]
    c["tried"] += tried
    c["refused"] += refused
    c["wrapped"] += wrapped


def summary_lines(failed=0, counts=None):
    """The lines pytest_terminal_summary prints: one per target, then the total (`failed`: fuzz tests that failed;
    `counts`: the workers' counts added up, else this process's)."""
    counts = COUNTS if counts is None else counts
    lines = []
    for target, c in sorted(counts.items()):
        lines.append(f"{target:<34} {c['tried']:>6} tried, {c['refused']:>6} refused with CnncalcError"
                     + (f" ({c['wrapped']} by a catch-all)" if c["wrapped"] else ""))
    total = sum(c["tried"] for c in counts.values())
    verdict = (f"{failed} fuzz test(s) FAILED: see above" if failed
               else "0 uncaught exceptions, 0 hangs, 0 partial files")
    lines.append(f"{'total':<34} {total:>6} mutated files tried: {verdict}")
    return lines


class Hang(BaseException):
    """Raised by the alarm when a case runs too long (a BaseException, so no `except Exception` swallows it)."""


def run_case(target, fn, seconds=CASE_SECONDS):
    """Call fn(); return its result, or the CnncalcError it raised. Anything else fails the case."""
    def alarm(signum, frame):
        raise Hang(f"{target}: the case ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    COUNTS[target]["tried"] += 1
    try:
        return fn()
    except CnncalcError as e:
        COUNTS[target]["refused"] += 1
        message = str(e)
        assert message and "\n" not in message, f"not a one-line message: {message!r}"
        cause = e.__cause__
        if cause is not None and not isinstance(cause, CnncalcError):
            kind = getattr(cause, "type_name", type(cause).__name__)  # keras_io.ChildError: the type in the reading process
            COUNTS[target]["wrapped"] += 1
            WRAPPED[kind].append(message)
            assert kind not in BUGS, f"a bug hidden by a catch-all: {kind}: {cause}"
        return e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        elapsed = time.perf_counter() - start
        assert elapsed < seconds, f"{target}: a case took {elapsed:.1f} s (limit {seconds} s)"


# ---------------------------------------------------------------- byte mutations

byte_mutation = st.tuples(st.sampled_from(["flip", "truncate", "insert", "delete", "zero"]),
                          st.integers(0, 2**24), st.binary(min_size=1, max_size=16))


def mutate_bytes(data, mutations):
    """Byte flips, truncation, insertion, deletion and zeroed runs, at positions taken modulo the length."""
    data = bytearray(data)
    for kind, where, payload in mutations:
        at = where % (len(data) + 1)
        if kind == "flip":
            data[at % len(data)] ^= payload[0] or 1
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = payload
        elif kind == "delete":
            del data[at:at + len(payload)]
        elif kind == "zero":
            data[at:at + len(payload) * 64] = bytes(len(data[at:at + len(payload) * 64]))
        else:
            raise ValueError(f"unknown mutation {kind!r}")
        if not data:
            break
    return bytes(data)


# ---------------------------------------------------------------- JSON mutations (structure-aware)

# Values a hostile or broken config puts where another belongs: wrong types, absurd sizes, non-finite numbers,
# formulas as names, deep nesting.
ODD_VALUES = [
    None, True, False, 0, -1, 1, 2, 3, 2.5, -0.0, 1e308, 10**9, 10**18, 2**64, float("nan"), float("inf"),
    "", "3", "relu", "softmax", "no_such_activation", "same", "valid", "channels_first", "Lambda",
    '=HYPERLINK("http://x","y")', "+cmd", "-1+1", "@SUM(1)", "\x1b[31mred", "a" * 300,
    [], [1], [3, 3], [0, 0], [-1, 2], [2.5, 2.5], [10**6, 10**6], [1, 2, 3], ["a", "b"], [[1, 1], [1, 1]], [None, 4, 4, 1],
    {}, {"class_name": "Lambda", "config": {}}, {"module": "os", "class_name": "system", "config": {}},
    {"class_name": "function", "config": "relu"}, [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]],
]
json_mutation = st.tuples(st.sampled_from(["replace", "delete", "rename", "duplicate", "swap_type"]),
                          st.integers(0, 2**20), st.integers(0, len(ODD_VALUES) - 1))


def _paths(value, path=()):
    """Every (path, value) inside a JSON value, the root included."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, path + (i,))


def _parent(root, path):
    for key in path[:-1]:
        root = root[key]
    return root


def mutate_json(value, mutations):
    """Change a parsed JSON document at chosen places: replace a value with an odd one, delete or rename a key,
    duplicate a list item, or turn a number into a string (and a string into a number)."""
    value = copy.deepcopy(value)
    for kind, where, odd in mutations:
        paths = [p for p, _ in _paths(value) if p]
        if not paths:
            return ODD_VALUES[odd]
        path = paths[where % len(paths)]
        parent, key = _parent(value, path), path[-1]
        if kind == "replace":
            parent[key] = copy.deepcopy(ODD_VALUES[odd])
        elif kind == "delete":
            del parent[key]
        elif kind == "rename" and isinstance(parent, dict):
            parent[f"{key}_x"] = parent.pop(key)
        elif kind == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif kind == "swap_type":
            v = parent[key]
            if isinstance(v, bool) or v is None:
                parent[key] = str(v).lower()
            elif isinstance(v, (int, float)):
                parent[key] = str(v)
            elif isinstance(v, str):
                parent[key] = len(v)
            elif isinstance(v, list):
                parent[key] = tuple_as_dict(v)
            else:
                parent[key] = list(v.values())
        # "rename" of a list item and "duplicate" of a dict value: nothing to do
    return value


def tuple_as_dict(items):
    return {str(i): v for i, v in enumerate(items)}


def dumps(value):
    """JSON as Python writes it (NaN and Infinity included, as a careless writer would)."""
    return json.dumps(value, allow_nan=True)


# ---------------------------------------------------------------- zip mutations

zip_mutation = st.tuples(st.sampled_from(["drop", "bytes", "empty", "rename", "duplicate", "stored_bomb_header"]),
                         st.integers(0, 2**16), st.lists(byte_mutation, min_size=1, max_size=3))


def zip_members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info.filename)) for info in zf.infolist()]


def make_zip(members, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a duplicated member is one of the mutations
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return buffer.getvalue()


def mutate_zip(members, mutations):
    """Drop, empty, rename or duplicate a member, or mutate one member's bytes; return the new zip's bytes."""
    members = list(members)
    bomb = False
    for kind, which, byte_mutations in mutations:
        if not members:
            break
        i = which % len(members)
        name, data = members[i]
        if kind == "drop":
            del members[i]
        elif kind == "bytes":
            members[i] = (name, mutate_bytes(data, byte_mutations))
        elif kind == "empty":
            members[i] = (name, b"")
        elif kind == "rename":
            members[i] = (name + ".bak", data)
        elif kind == "duplicate":
            members.append((name, data))
        elif kind == "stored_bomb_header":
            bomb = True
        else:
            raise ValueError(f"unknown zip mutation {kind!r}")
    data = make_zip(members)
    return claim_huge_sizes(data) if bomb else data


def claim_huge_sizes(data):
    """Rewrite every central-directory entry to claim 4 GB uncompressed (what a zip bomb's header says)."""
    data = bytearray(data)
    at = data.find(b"PK\x01\x02")
    while at != -1:
        data[at + 24:at + 28] = (0xFFFFFFFE).to_bytes(4, "little")
        at = data.find(b"PK\x01\x02", at + 4)
    return bytes(data)
