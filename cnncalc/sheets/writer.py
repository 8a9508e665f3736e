"""Write a workbook plan with XlsxWriter: styles, frames, charts, and the streaming cell loop."""

import datetime

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
    """A native column chart of one vector (e.g. the softmax probabilities), labelled by class index."""
    chart = wb.add_chart({"type": "column"})
    chart.add_series({"name": spec["title"], "values": [sheet_name, *spec["values"]],
                      "categories": [sheet_name, *spec["categories"]], "fill": {"color": "#F4B183"},
                      "data_labels": {"value": True, "num_format": "0.000"}})
    chart.set_title({"name": spec["title"]})
    chart.set_legend({"none": True})
    chart.set_x_axis({"name": "class"})
    chart.set_size({"width": 400, "height": 260})
    return chart


def write_plan(plan, path, force=False, quiet=False):
    """Write the plan to `path` through a temporary file in the same folder, renamed at the end.

    Excel's limits are checked first: a plan that breaks one is refused before any file is opened.
    Rows stream from the plan to XlsxWriter (constant_memory), so memory stays near the size of the weights.
    A job longer than a second shows a progress bar when stderr is a terminal, unless `quiet`.
    """
    import xlsxwriter

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
            ws = wb.add_worksheet(sp.name)
            for col, width in sorted(sp.col_widths.items()):
                ws.set_column(col, col, width)
            if sp.freeze:
                ws.freeze_panes(*sp.freeze)
            if sp.hidden:
                ws.hide()
            if sp.protect:  # no password: it guards against slips, not people
                ws.protect("", {"format_columns": True, "format_rows": True, "select_locked_cells": True, "select_unlocked_cells": True})
            ws.set_landscape()
            ws.fit_to_pages(1, 0)  # printed (or rendered to PDF) one page wide
            for r0, c0, r1, c1 in sp.color_scales:
                ws.conditional_format(r0, c0, r1, c1, {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#F4B183"})
            for chart in sp.charts:
                ws.insert_chart(*chart["anchor"], column_chart(wb, sp.name, chart))
            frames = frame_sides(sp.outlines)
            frame_rows = {r for r, _ in frames}
            # The hot loop of a big workbook (millions of cells): keep it to a lookup and one call per cell.
            write_formula, write_string, write_number = ws.write_formula, ws.write_string, ws.write_number
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
