"""Write a workbook plan with XlsxWriter: styles, frames, charts, and the streaming cell loop."""

import datetime
import re

import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from cnncalc.files import atomic_output
from cnncalc.sheets.limits import check_plan

STYLES = {
    "title": {"bold": True, "font_size": 12},
    "subtitle": {"bold": True, "font_color": "#1F4E79"},
    "caption": {"italic": True, "font_color": "#595959"},
    "header": {"bold": True, "align": "center", "bg_color": "#E7E6E6", "bottom": 1},
    "index": {"font_color": "#595959", "align": "right"},
    "text": {},
    "int": {"num_format": "0"},
    "int_bold": {"num_format": "0", "bold": True},
    "input": {"num_format": "General", "bg_color": "#FFF2CC", "border": 1, "border_color": "#BFBFBF"},
    "weight": {"num_format": "0.0000000", "bg_color": "#DDEBF7", "border": 1, "border_color": "#BFBFBF"},
    "value": {"num_format": "0.000000", "border": 1, "border_color": "#BFBFBF"},
    "prob": {"num_format": "0.000000", "bold": True, "border": 1, "border_color": "#BFBFBF"},
    "pad": {"num_format": "0", "font_color": "#A6A6A6", "bg_color": "#F2F2F2", "border": 1, "border_color": "#D9D9D9"},
    "answer": {"num_format": "General", "locked": False, "bg_color": "#FFFFFF", "border": 1, "border_color": "#2F5597"},
    "answer_text": {"locked": False, "bg_color": "#FFFFFF", "bottom": 1, "border_color": "#2F5597"},
    "class": {"num_format": "0", "bold": True, "bg_color": "#E2EFDA", "border": 2, "align": "center"},
    "wrap": {"text_wrap": True, "valign": "top"},  # long text in a column of its own (the Steps sheet's calculations)
}


FRAME = {"color": "#C00000", "width": 5}  # a thick red frame (XlsxWriter border style 5)


def frame_sides(outlines):
    """{(row, col): frozenset of 'top'/'bottom'/'left'/'right'} for the edge cells of each outlined rectangle."""
    sides = {}
    for r0, c0, r1, c1 in outlines:
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                edge = {s for s, on in (("top", r == r0), ("bottom", r == r1), ("left", c == c0), ("right", c == c1)) if on}
                if edge:
                    sides[(r, c)] = sides.get((r, c), frozenset()) | edge
    return sides


def framed(wb, formats, style, sides):
    """The cell's style plus a thick frame on the given sides (made once per combination)."""
    key = (style, sides)
    if key not in formats:
        props = dict(STYLES[style])
        for side in sides:
            props[side], props[f"{side}_color"] = FRAME["width"], FRAME["color"]
        formats[key] = wb.add_format(props)
    return formats[key]


def column_chart(wb, sheet_name, spec):
    """A native column chart of one vector (e.g. the softmax probabilities), labelled by class index; spec "type"
    "bar" lays the columns down (for long category names), and x_axis, num_format and size change the defaults."""
    chart = wb.add_chart({"type": spec.get("type", "column")})
    chart.add_series({"name": spec["title"], "values": [sheet_name, *spec["values"]],
                      "categories": [sheet_name, *spec["categories"]], "fill": {"color": "#F4B183"},
                      "data_labels": {"value": True, "num_format": spec.get("num_format", "0.000")}})
    chart.set_title({"name": spec["title"]})
    chart.set_legend({"none": True})
    chart.set_x_axis({"name": spec.get("x_axis", "class")})
    chart.set_size(spec.get("size", {"width": 400, "height": 260}))
    return chart


def line_chart(wb, sheet_name, spec):
    """A native line chart of one or more series over the same categories (e.g. the loss per step of each run).

    spec: title, x_axis and y_axis names, categories (r0, c0, r1, c1), series [{"name", "values": (r0, c0, r1, c1)}], size.
    """
    chart = wb.add_chart({"type": "line"})
    for series in spec["series"]:
        chart.add_series({"name": series["name"], "values": [sheet_name, *series["values"]],
                          "categories": [sheet_name, *spec["categories"]], "marker": {"type": "none"}})
    chart.set_title({"name": spec["title"]})
    chart.set_x_axis({"name": spec.get("x_axis", ""), "interval_unit": spec.get("interval", 1)})
    chart.set_y_axis({"name": spec.get("y_axis", ""), "major_gridlines": {"visible": True}})
    if len(spec["series"]) == 1:
        chart.set_legend({"none": True})
    else:
        chart.set_legend({"position": "bottom"})
    chart.set_size(spec.get("size", {"width": 640, "height": 320}))
    return chart


CHARTS = {"column": column_chart, "bar": column_chart, "line": line_chart}  # a chart spec's "type" (default "column")


# Every function cnncalc's formulas call (sheets/formulas.py, engine/layers.py): functions as old as Excel itself,
# which no Excel needs a "_xlfn." prefix for.
PLAIN_FUNCTIONS = frozenset({"SUMPRODUCT", "SUM", "AVERAGE", "MAX", "MIN", "ABS", "EXP", "LN", "SQRT", "TANH", "ERF", "IF", "MATCH",
                             "ERFC", "AND", "OR", "SIGN", "COUNTIF"})  # the last five: the gradients of training workbooks
# What keeps a formula off XlsxWriter's path: a character cnncalc never writes in one, or a call to anything but a
# PLAIN_FUNCTION (the whole name before a "(", so "X.SUM(" and "SUMX(" are not SUM).
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9_.$:!'+\-*/^(),<>= ]|(?<![A-Za-z0-9_.])(?!(?:%s)\()[A-Za-z0-9_.]+\("
                        % "|".join(sorted(PLAIN_FUNCTIONS, key=len, reverse=True)))
_PROBE = "=SUMPRODUCT('Sample 1'!B4:C5,Weights!$B$6:$C$7)+" + "+".join(f"{f}(A1)" for f in sorted(PLAIN_FUNCTIONS)) + "-1e-05*B4^3/(A1>=0)"


def plain(formula):
    """True for '=...' text that calls only PLAIN_FUNCTIONS and has only the characters cnncalc writes in formulas:
    XlsxWriter's preparation of it just drops the '='."""
    return formula.startswith("=") and _NOT_PLAIN.search(formula, 1) is None


class PlainFormulaWorksheet(Worksheet):
    """XlsxWriter's worksheet, minus its rescan of every formula for newer Excel functions when the formula calls none.

    XlsxWriter prepares each formula with some 30 regular expressions that add the "_xlfn." prefix newer functions
    need (SORT, XLOOKUP, ...): most of the time of writing a deep model's workbook. A plain() formula has no such
    call, so its preparation is just dropping the '='. Anything else takes XlsxWriter's own path, and so does every
    formula if this XlsxWriter prepares the plain functions in any other way (checked once, on a probe formula).
    """

    _plain_ok = None

    def _prepare_formula(self, formula, expand_future_functions=False):
        if self._plain_ok is None:
            self._plain_ok = super()._prepare_formula(_PROBE) == _PROBE[1:] and super()._prepare_formula(_PROBE, True) == _PROBE[1:]
        if self._plain_ok and plain(formula):
            return formula[1:]
        return super()._prepare_formula(formula, expand_future_functions)

    def cell_writers(self):
        """(write_formula, write_string, write_number) as XlsxWriter's own undecorated versions: its public methods
        only check first whether the row is "A1" text, on every call, and the writer's rows and columns are numbers."""
        return self._write_formula, self._write_string, self._write_number


PAGE_WIDTH = 90  # column-width units across a landscape page printed at 100 % (Excel's Calibri fits 130: LibreOffice's fonts are wider)
FIT_SCALE, WIDE_SCALE = 50, 75  # a sheet fits one page wide down to FIT_SCALE % (Excel: 70 %); a wider one prints at WIDE_SCALE %
MAX_BREAKS = 1023  # Excel's limit of page breaks a sheet
DEFAULT_WIDTH = 8.43  # a column's width when the plan sets none


def page_starts(widths, gaps, page):
    """The columns where printed pages start after the first: each page holds as many columns as fit in `page` width
    units, ending at a gap (an empty column between panels) where one falls on the page, so no panel is cut that fits
    on a page. widths: each column's width; gaps: the empty columns. Pure: page_starts([10] * 9, {3}, 45) -> [4, 8]."""
    starts, first, used = [], 0, 0.0
    for c, w in enumerate(widths):
        if used + w > page and c > first:
            cut = max((g + 1 for g in gaps if first < g + 1 <= c), default=c)
            starts.append(cut)
            first, used = cut, sum(widths[cut:c])
        used += w
    return starts


def print_setup(ws, sp):
    """Every sheet prints readably: landscape; one page wide when that keeps it at FIT_SCALE % or more, else at
    WIDE_SCALE % with each page ending between two panels; as many pages tall as it takes; its title rows
    (sp.print_titles, else the frozen rows) atop every page."""
    ws.set_landscape()
    cols = sp.extent[1]
    widths = [sp.col_widths.get(c, DEFAULT_WIDTH) for c in range(cols)]
    if sum(widths) <= PAGE_WIDTH * 100 / FIT_SCALE:
        ws.fit_to_pages(1, 0)
    else:
        covered = [False] * cols
        for b in sp.blocks:
            covered[b.left:b.right] = [True] * (min(b.right, cols) - b.left)
        gaps = {c for c in range(cols) if not covered[c]}
        ws.set_print_scale(WIDE_SCALE)
        ws.set_v_pagebreaks(page_starts(widths, gaps, PAGE_WIDTH * 100 / WIDE_SCALE)[:MAX_BREAKS])
    titles = sp.print_titles or ((0, sp.freeze[0] - 1) if sp.freeze and sp.freeze[0] > 0 else None)
    if titles:
        ws.repeat_rows(*titles)


def write_plan(plan, path, force=False, quiet=False):
    """Write the plan to `path` through a temporary file in the same folder, renamed at the end.

    Excel's limits are checked first: a plan that breaks one is refused before any file is opened.
    Rows stream from the plan to XlsxWriter (constant_memory), so memory stays near the size of the weights.
    A job longer than a second shows a progress bar when stderr is a terminal, unless `quiet`.
    """
    from cnncalc.progress import Progress

    check_plan(plan)
    total = sum(b.height * b.width for sp in plan.sheets for b in sp.blocks)  # cells, gaps included: for the bar only
    with atomic_output(path, force) as tmp, Progress(f"writing {path}", total, quiet) as bar:
        wb = xlsxwriter.Workbook(tmp, {"constant_memory": True, "strings_to_formulas": False,
                                       "strings_to_numbers": False, "strings_to_urls": False})
        # A fixed creation date: the same model and inputs give the same bytes.
        wb.set_properties({"title": "cnncalc worked example", "author": "cnncalc", "created": datetime.datetime(2024, 1, 1)})
        formats = {name: wb.add_format(props) for name, props in STYLES.items()}
        for sp in plan.sheets:
            ws = wb.add_worksheet(sp.name, PlainFormulaWorksheet)
            for col, width in sorted(sp.col_widths.items()):
                ws.set_column(col, col, width)
            for row, height in sorted(sp.row_heights.items()):  # before the rows are written (constant_memory)
                ws.set_row(row, height)
            if sp.freeze:
                ws.freeze_panes(*sp.freeze)
            if sp.hidden:
                ws.hide()
            if sp.protect:  # no password: it guards against slips, not people
                ws.protect("", {"format_columns": True, "format_rows": True, "select_locked_cells": True, "select_unlocked_cells": True})
            print_setup(ws, sp)
            for r0, c0, r1, c1 in sp.color_scales:
                ws.conditional_format(r0, c0, r1, c1, {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#F4B183"})
            for chart in sp.charts:
                ws.insert_chart(*chart["anchor"], CHARTS[chart.get("type", "column")](wb, sp.name, chart))
            frames = frame_sides(sp.outlines)
            frame_rows = {r for r, _ in frames}
            # The hot loop of a big workbook (millions of cells): keep it to a lookup and one call per cell.
            cell_writers = getattr(ws, "cell_writers", None)
            write_formula, write_string, write_number = cell_writers() if cell_writers else (ws.write_formula, ws.write_string, ws.write_number)
            for r, row in sp.rows():
                framed_row = r in frame_rows
                for c, (value, formula, style) in row:
                    fmt = formats[style]
                    if framed_row and (r, c) in frames:
                        fmt = framed(wb, formats, style, frames[(r, c)])
                    if formula is not None:
                        write_formula(r, c, formula, fmt, value if value is not None else 0)
                    elif isinstance(value, str):
                        write_string(r, c, value, fmt)
                    elif value is not None:
                        write_number(r, c, value, fmt)
                    else:  # an empty cell that still has a look (e.g. an unlocked answer cell)
                        ws.write_blank(r, c, None, fmt)
                bar.advance(len(row))
        bar.stage(f"writing {path}: compressing")
        wb.close()
    return path
