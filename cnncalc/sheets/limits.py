"""Excel's limits, checked on a workbook plan before any file is opened.

Past these Excel refuses to open a file, or opens it damaged: 1,048,576 rows and 16,384 columns a sheet,
8,192 characters a formula, 255 arguments a function call, 32,767 characters a cell. A plan that breaks one is refused with a
CnncalcError naming the limit, the sheet and panel (or weight), and the numbers.

Checking every formula of a big workbook would cost as much as writing it, so a panel is probed at the corners
of its index space: its formulas all have the same shape, and the last element has the longest addresses.
"""

from itertools import product

from cnncalc.sheets.cells import MAX_COLS, MAX_ROWS, a1, sheet_prefix
from cnncalc.errors import CnncalcError

MAX_FORMULA_CHARS = 8_192
MAX_ARGUMENTS = 255
MAX_TEXT_CHARS = 32_767  # XlsxWriter leaves a longer string out of the file, with only a warning
SMALL_BLOCK = 50_000  # cells: blocks up to this size are checked cell by cell, bigger ones at their corners


def check_fits(sheet, what, top, left, height, width):
    """Refuse a rectangle (0-based top/left, height x width) that reaches past Excel's last row or column."""
    bottom, right = top + height, left + width
    if right > MAX_COLS:
        raise CnncalcError(
            f"Sheet {sheet!r} would need {right:,} columns for {what} ({width:,} columns from column {left + 1:,}). "
            f"Expected at most {MAX_COLS:,} columns (Excel's limit). Received a tensor too wide for one sheet "
            "(a feature map's channels already wrap into rows of maps): a narrower input, or fewer units, would fit"
        )
    if bottom > MAX_ROWS:
        raise CnncalcError(
            f"Sheet {sheet!r} would need {bottom:,} rows for {what} ({height:,} rows from row {top + 1:,}). "
            f"Expected at most {MAX_ROWS:,} rows (Excel's limit). Received a tensor too long for one sheet: "
            "a smaller input or fewer features would fit"
        )


def function_arguments(formula):
    """[(function name, argument count), ...] of every function call in the formula text, innermost first.

    >>> function_arguments("=SUMPRODUCT(A1:B2,C1:D2)+MAX(0,E1)")
    [('SUMPRODUCT', 2), ('MAX', 2)]
    """
    calls, stack, name, i, n = [], [], "", 0, len(formula)
    while i < n:
        ch = formula[i]
        if ch in "'\"":  # a quoted sheet name or a string: skip to its closing quote (doubled quotes escape)
            j = i + 1
            while j < n and not (formula[j] == ch and formula[j + 1:j + 2] != ch):
                j += 2 if formula[j] == ch else 1
            i, name = j + 1, ""
            continue
        if ch.isalnum() or ch in "._":
            name += ch
        else:
            if ch == "(":
                empty = formula[i + 1:i + 2] == ")"
                stack.append([name or None, 0 if empty else 1])  # None: parentheses that only group
            elif ch == "," and stack and stack[-1][0] is not None:
                stack[-1][1] += 1
            elif ch == ")" and stack:
                fname, count = stack.pop()
                if fname is not None:
                    calls.append((fname.upper(), count))
            name = ""
        i += 1
    return calls


def check_formula(formula, where):
    """Refuse one formula text (with or without its '=') that is too long or calls a function with too many arguments."""
    text = formula if formula.startswith("=") else "=" + formula
    if len(text) > MAX_FORMULA_CHARS:
        raise CnncalcError(
            f"Cannot write the workbook: the formula of {where} would be {len(text):,} characters. "
            f"Expected at most {MAX_FORMULA_CHARS:,} (Excel's limit on a formula). Received {text[:60]}… "
            "(a layer with fewer input channels, or without dilation, writes a shorter formula)"
        )
    for fname, count in function_arguments(text):
        if count > MAX_ARGUMENTS:
            raise CnncalcError(
                f"Cannot write the workbook: the formula of {where} calls {fname} with {count:,} arguments. "
                f"Expected at most {MAX_ARGUMENTS} (Excel's limit on a function's arguments). Received {text[:60]}…"
            )


def corner_indices(shape):
    """The first and last index along every axis, combined: (0, 0), (0, n-1), (m-1, 0), (m-1, n-1) for (m, n)."""
    return sorted(set(product(*({0, n - 1} for n in shape))))


def check_panel(sheet, panel):
    """A panel's formulas at the corners of its index space (they have the longest and the shortest addresses), and
    in a grid of maps the far corner of the last map across (the rightmost column)."""
    if panel.formula is None:
        return
    p = panel.placement
    probes = corner_indices(p.shape)
    if p.layout == "grid":
        probes.append((p.shape[0] - 1, p.shape[1] - 1, *p.map_index(p.across - 1)))
    for idx in probes:
        text = panel.formula(idx)
        if text is not None:
            check_formula(text, f"{panel.title} at {sheet_prefix(sheet, None)}{a1(*p.pos(idx))}")


def check_block(sheet, block):
    """Every formula and text of a small block (titles, the Summary table); a big one (a weight matrix) at its corners."""
    if block.height * block.width <= SMALL_BLOCK:
        rows = ((r, c) for r in range(block.height) for c in range(block.width))
    else:
        rows = {(r, c) for r in (0, block.height - 1) for c in (0, block.width - 1)}
    for r, c in rows:
        cell = block.cell(r, c)
        if cell is None:
            continue
        where = f"{sheet_prefix(sheet, None)}{a1(block.top + r, block.left + c)}"
        if cell.formula:
            check_formula(cell.formula, where)
        elif isinstance(cell.value, str) and len(cell.value) > MAX_TEXT_CHARS:
            raise CnncalcError(f"Cannot write the workbook: the text at {where} would be {len(cell.value):,} characters. "
                               f"Expected at most {MAX_TEXT_CHARS:,} (Excel's limit on a cell). Received {cell.value[:60]}…")


def check_plan(plan):
    """Refuse a WorkbookPlan that would break one of Excel's limits; run it before any file is opened."""
    for sheet in plan.sheets:
        rows, cols = sheet.extent
        check_fits(sheet.name, "its cells", 0, 0, rows, cols)
        panels = getattr(sheet, "panels", None)
        if panels:  # a sample sheet: every formula belongs to a panel
            for panel in panels:
                check_panel(sheet.name, panel)
        else:
            for block in sheet.blocks:
                check_block(sheet.name, block)
    return plan
