"""Plan the workbook for a model and its inputs: pure data, written by sheets/writer.py.

Sheets: "Read me", "Summary", one sheet per sample ("Sample 1", ...), "Weights", and a hidden
"_cnncalc" sheet holding the architecture so that `verify` can rebuild the model from the file.
On a sample sheet the network flows left to right, one panel per step (input, scaled input,
each layer's pre-activation and activation, the prediction); every computed cell is a live formula
over the previous panel and the Weights sheet, and carries the engine's value as its cached result.
A feature map is one (H, W) map per channel, MAPS_ACROSS maps to a row, then the next row of maps below.
"""

from dataclasses import dataclass, field
import json
import math

import numpy as np

from cnncalc.sheets import formulas
from cnncalc.engine import ops
from cnncalc.sheets.cells import MAX_COLS, Block, Cell, Placement, SheetPlan, WorkbookPlan, a1, a1_range, cells_block, sheet_prefix
from cnncalc.errors import CnncalcError
from cnncalc.guards import check_finite
from cnncalc.inputs import parse_scale
from cnncalc.engine.layers import Conv2D
from cnncalc.sheets.limits import check_fits

FORMAT_VERSION = 2  # 2: a feature map's channels in rows of MAPS_ACROSS maps; 1: all in one row (see layout_version)
META_SHEET = "_cnncalc"
WEIGHTS_SHEET = "Weights"
TOP = 3  # sample panels: title row 0, caption row 1, channel headers row 2, data from row 3
COL_WIDTH = 10
MAPS_ACROSS = 8  # a feature map of more channels continues in the next row of maps, below
LAYOUT_ROW = 4  # the _cnncalc sheet's row "maps across" (format 2), between the architecture and practice rows


def sample_sheet_name(n):
    return f"Sample {n + 1}"


@dataclass
class Panel:
    """One step on a sample sheet: a tensor (batch-less values) and how each element is computed.

    `step` says what the panel is ("input", "scaled", "padded", "pre", "activation", "output",
    "softmax_max", "softmax_exp", "softmax_sum", "softmax", "log_softmax", "class", "class_value"),
    `layer` the layer it belongs to (None for the input steps and the prediction).
    """

    title: str
    caption: str
    placement: Placement
    values: np.ndarray
    formula: object = None  # idx -> formula text without '=', or None for a given constant
    style: str = "value"
    headers: list = field(default_factory=list)  # one label per channel of a grid
    step: str = "output"
    layer: object = None
    # Which cells of a panel with a formula hold a given number instead (formula(idx) None), known without making any
    # formula's text (verify compares a deep model's 100,000 cells): a boolean array, False for none, None if unknown.
    constants: object = None


def tensor_layout(shape):
    """A vector goes down a column; anything of 2 or more axes is a grid of (H, W) maps."""
    if len(shape) >= 2:
        return "grid"
    elif len(shape) == 1:
        return "column"
    raise CnncalcError(f"Cannot lay out a tensor on a sheet. Expected shape (H, W, ...) or (D,). Received {tuple(shape)}")


def map_label(shape, k):
    """The header of map k of a tensor with no names for its channels: 'channel 3', or '[:, :]' for an (H, W) tensor."""
    if len(shape) == 3:
        return f"channel {k}"
    rest = np.unravel_index(k, shape[2:]) if len(shape) > 3 else ()
    return "[:, :" + "".join(f", {int(i)}" for i in rest) + "]"


class SamplePlanner:
    """Places the panels of one sample left to right, each starting one blank column after the last.

    A feature map's channels go `maps_across` to a row of maps (None: all in one row, as format 1 did), fewer when
    that many maps would be wider than a sheet. A panel that would run past Excel's last column starts a new band
    of panels below everything placed so far. So only a single map wider than a sheet is refused.
    """

    def __init__(self, sheet, maps_across=MAPS_ACROSS):
        self.sheet, self.maps_across = sheet, maps_across
        self.top, self.col = TOP, 1
        self.bands = 1
        self.panels = []

    def place(self, shape):
        """A Placement for the next panel; a column vector gets an index column on its left."""
        layout = tensor_layout(shape)
        across = self.maps_across
        if layout == "grid" and math.prod(shape[2:]) * (shape[1] + 1) > MAX_COLS:  # as many maps as a sheet holds
            across = max(1, min(across or MAX_COLS, MAX_COLS // (shape[1] + 1)))
        for _ in range(2):
            left = self.col + (1 if layout == "column" else 0)
            p = Placement(self.sheet.name, self.top, left, shape, layout, across)
            if self.col == 1 or p.left + p.extent[1] <= MAX_COLS:
                return p
            self.new_band()
        raise AssertionError("a new band starts at the first column")

    def new_band(self):
        """Start a new band of panels below everything on the sheet: a blank row, then titles, captions and headers."""
        self.top, self.col = self.sheet.extent[0] + 1 + TOP, 1
        self.bands += 1

    def add(self, panel):
        """Place a panel with its title, caption and headers; the next one goes to its right."""
        p = panel.placement
        first = p.left - (1 if p.layout == "column" else 0)
        check_fits(self.sheet.name, f"panel {panel.title!r}", p.top, first, p.extent[0], p.left + p.extent[1] - first)
        if p.layout == "grid":
            heads = {}
            for k in range(p.maps):
                r, c = p.map_origin(k)
                heads.setdefault(r - 1, {})[(r - 1, c)] = Cell(panel.headers[k] if panel.headers else map_label(p.shape, k), style="header")
            for row in heads.values():  # one block a row of headers, so no block spans the maps below it
                self.sheet.add(cells_block(row))
            self.sheet.color_scales.append((p.top, p.left, p.top + p.extent[0] - 1, p.left + p.extent[1] - 1))
        else:
            self.sheet.add(Block(p.top, first, p.shape[0], 1, lambda r, c: Cell(r, style="index")))
            self.sheet.add(cells_block({(p.top - 1, first): Cell("#", style="header"), (p.top - 1, p.left): Cell("value", style="header")}))
        self.sheet.add(cells_block({(p.top - TOP, first): Cell(panel.title, style="title"),
                                    (p.top - TOP + 1, first): Cell(panel.caption, style="caption")}))
        self.add_cells(panel)
        width = p.left + p.extent[1] - first
        fit_widths(self.sheet, first, width, max(len(panel.title), min(len(panel.caption), 36)))
        self.col = first + width + 1
        return p

    def add_cells(self, panel):
        """Only the panel's cells (no title or headers): for single cells placed beside a panel."""

        def cell(idx):
            v = panel.values[idx]
            v = int(v) if panel.step == "class" else float(v)
            f = panel.formula(idx) if panel.formula else None
            if f is None:  # a given number (input, or a padding zero)
                return Cell(v, style=panel.style if panel.formula is None else "pad")
            return Cell(v, "=" + f, panel.style)

        check_fits(self.sheet.name, f"panel {panel.title!r}", panel.placement.top, panel.placement.left, *panel.placement.extent)
        self.sheet.add(panel.placement.block(cell))
        self.panels.append(panel)
        return panel.placement


def fit_widths(sheet, first, width, text_len):
    """Widen the panel's last column so its title and caption are readable."""
    each = max(COL_WIDTH, -(-(text_len + 2) // width))  # shared evenly, so no one column balloons
    for c in range(first, first + width):
        sheet.col_widths[c] = max(sheet.col_widths.get(c, 0), each)


def plan_workbook(model, raw, scale=None, title=None, labels=None, lang="en", window=(0, 0), steps=True, maps_across=MAPS_ACROSS):
    """The full WorkbookPlan for `model` on the batch `raw` (before scaling by `scale`, e.g. "1/8").

    `lang` ("en" or "zh") chooses the labels of the Steps sheet; `window` (row, col) is the output cell of
    the first convolution whose input window is framed in red. `steps=False` leaves out the Steps sheet (text
    only: verify compares formula cells, and a practice workbook must not show the answers written out).
    `maps_across` is how many channel maps of a feature map sit side by side (None: all, as format 1 laid them out;
    a workbook is re-planned with what its _cnncalc sheet records, see read_layout).
    """
    raw = model.check_input(np.asarray(raw, dtype=np.float64))
    factor = parse_scale(scale)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below, by name
        traces = check_finite(model.trace(raw * factor))
    plan = WorkbookPlan()
    readme = plan.add_sheet("Read me")
    summary = plan.add_sheet("Summary")
    samples = [plan.add_sheet(sample_sheet_name(n), freeze=(TOP, 0)) for n in range(raw.shape[0])]
    weights = plan_weights(plan.add_sheet(WEIGHTS_SHEET), model)
    plan.weights = weights
    plan.inputs, plan.outputs = [], []
    for n, sheet in enumerate(samples):
        inp, out = plan_sample(sheet, model, traces, n, raw[n], factor, scale, weights, window, maps_across)
        plan.inputs.append(inp)
        plan.outputs.append(out)
    for sheet in samples:  # below the first row of maps, its frozen headers would name the wrong maps: freeze titles only
        if any(p.placement.layout == "grid" and p.placement.map_rows > 1 for p in sheet.panels):
            sheet.freeze = (TOP - 1, 0)
    if steps:
        steps_sheet = SheetPlan(STEPS_SHEET, freeze=(3, 0))  # its headers stay in view, and atop every printed page
        plan.sheets.insert(plan.sheets.index(plan.sheet(WEIGHTS_SHEET)), steps_sheet)
        plan_steps(steps_sheet, plan, samples, lang)
    plan_summary(summary, model, plan.outputs, labels)
    version = layout_version(samples)
    plan_readme(readme, model, title, scale, raw.shape[0], maps_across if version > 1 else None)
    plan_meta(plan.add_sheet(META_SHEET, hidden=True), model, scale, raw.shape[0], version, maps_across)
    return plan


def layout_version(samples):
    """The lowest format that describes the sample sheets' layout: 1 when it is format 1's (each feature map's
    channels in one row of maps, of 3 axes, and one band of panels), else 2.

    So a workbook that format 1 could hold keeps format 1's bytes, and the earlier release still reads it.
    """
    for sheet in samples:
        if sheet.bands > 1:
            return 2
        for panel in sheet.panels:
            p = panel.placement
            if p.layout == "grid" and (len(p.shape) != 3 or p.map_rows > 1):
                return 2
    return 1


STEPS_SHEET = "Steps"
STEPS_LIMIT = 20_000  # formula cells; past this a written-out sheet is too long to read (and slow to write)
STEPS_LINE = 70  # characters of a calculation a line of its column holds (at least: wider fonts hold fewer)
STEPS_LABELS = {
    "en": ("Every computed cell written out, as the chapter writes it", "sheet", "cell", "step", "calculation", "result",
           "This workbook has {n:,} computed cells, too many to write out; see the formulas, or `cnncalc explain`."),
    "zh": ("每个计算单元格的展开式（与书中写法相同）", "工作表", "单元格", "步骤", "计算过程", "结果",
           "本工作簿共有 {n:,} 个计算单元格, 太多, 不逐一展开; 请看公式, 或使用 cnncalc explain。"),
}


def plan_steps(sheet, plan, samples, lang="en"):
    """The Steps sheet: for every formula cell of the sample sheets, its calculation written out with numbers."""
    from cnncalc.companion.explain import num
    from cnncalc.sheets.steps import Expander, value_lookup

    try:
        title, *heads, too_many = STEPS_LABELS[lang]
    except KeyError:
        raise CnncalcError(f"Invalid value for --lang. Expected one of {', '.join(STEPS_LABELS)}. Received {lang!r}") from None
    panels = [(s, p) for s in samples for p in s.panels if p.formula is not None]
    count = sum(int(np.prod(p.placement.shape)) for _, p in panels)
    cells = {(0, 0): Cell(title, style="title")}
    sheet.col_widths.update({0: 10, 1: 8, 2: 34, 3: 80, 4: 14})  # one page wide when printed, the calculations wrapped
    if count > STEPS_LIMIT:
        cells[(2, 0)] = Cell(too_many.format(n=count), style="text")
        sheet.add(cells_block(cells))
        return
    # The panels' own numbers (making the sample sheets' cells would build every formula again); a weight is looked
    # up only when a written-out term shows it (a Dense column of thousands shows its first few).
    values = {s.name: {p.placement.pos(idx): p.values[idx].item() for p in s.panels for idx in p.placement.indices()} for s in samples}
    weight_value = value_lookup(plan.sheet(WEIGHTS_SHEET))

    def value(sheet, rc):
        return values[sheet][rc] if sheet in values else weight_value(rc)

    expand = Expander(value)  # each number written as text once, each kernel's terms once

    cells.update({(2, c): Cell(h, style="header") for c, h in enumerate(heads)})
    sheet.add(cells_block(cells))
    lines = []  # the rows from row 3 on: [(col, Cell), ...] of the five columns, one row a formula cell
    for s, panel in panels:
        sheet_name, title = Cell(s.name, style="text"), Cell(panel.title, style="text")
        for idx in panel.placement.indices():
            text = panel.formula(idx)
            if text is None:  # a padding zero: nothing to compute
                continue
            r, c = panel.placement.pos(idx)
            result = values[s.name][(r, c)]
            written = f"{expand(text, s.name)} = {num(result)}"
            if len(written) > STEPS_LINE:
                sheet.row_heights[3 + len(lines)] = 15 * -(-len(written) // STEPS_LINE)
            lines.append([(0, sheet_name), (1, Cell(a1(r, c), style="text")), (2, title),
                          (3, Cell(written, style="wrap")),  # wrapped in its column, so its result shows
                          (4, Cell(result, style="value"))])
    if lines:  # one block made of the rows as they are (a dict of 100,000 cells would only be sorted back into them)
        sheet.add(Block(3, 0, len(lines), 5, lambda r, c: lines[r][c][1], lines.__getitem__))


def plan_weights(sheet, model):
    """Lay every weight out on the Weights sheet, top to bottom; return {(layer name, weight name): Placement}."""
    placements = {}
    row = 0
    sheet.add(cells_block({(0, 0): Cell("Weights, as keras Model.get_weights() returns them (edit any of them: every sample updates)", style="title")}))
    sheet.col_widths[0] = 14
    row = 2
    for layer, shape in zip(model.layers, model.shapes):
        if not layer.weights:
            continue
        sheet.add(cells_block({(row, 0): Cell(f"{layer.name} ({layer.class_name})", style="title")}))
        row += 1
        for wname, arr in layer.weights.items():
            layout = layer.weight_layouts()[wname]
            label = f"{layer.name}/{wname}   shape {tuple(arr.shape)}"
            sheet.add(cells_block({(row, 0): Cell(label, style="subtitle")}))
            top = row + 2
            p = Placement(sheet.name, top, 1, arr.shape, layout)
            check_fits(sheet.name, f"weight {layer.name}/{wname} of shape {tuple(arr.shape)}", top - 1, 0, p.extent[0] + 1, p.extent[1] + 1)
            heads = {}
            if layout == "kernel":
                kh, kw, cin, cout = arr.shape
                for f in range(cout):
                    heads[(p.pos((0, 0, 0, f))[0], 0)] = Cell(f"filter {f}", style="header")
                    for c in range(cin):
                        r, col = p.pos((0, 0, c, f))
                        heads[(r - 1, col)] = Cell(f"[:, :, {c}, {f}]", style="header")
            elif layout == "matrix":
                for j in range(arr.shape[1]):
                    heads[(top - 1, 1 + j)] = Cell(f"unit {j}", style="header")
                sheet.add(Block(top, 0, arr.shape[0], 1, lambda r, c: Cell(f"input {r}", style="index")))
            elif layout == "row":
                for j in range(arr.shape[0]):
                    kind = "filter" if isinstance(layer, Conv2D) else "unit" if layer.class_name == "Dense" else "channel"
                    heads[(top - 1, 1 + j)] = Cell(f"{kind} {j}", style="header")
                heads[(top, 0)] = Cell(wname, style="index")
            sheet.add(cells_block(heads))
            sheet.add(p.constant_block(arr, "weight"))
            for c in range(1, 1 + p.extent[1]):
                sheet.col_widths.setdefault(c, COL_WIDTH + 1)
            placements[(layer.name, wname)] = p
            row = top + p.extent[0] + 1
    return placements


def plan_sample(sheet, model, traces, n, raw, factor, scale_text, weights, window=(0, 0), maps_across=MAPS_ACROSS):
    """The panels of sample n; returns (placement of the raw input, placement of the final output)."""
    sp = SamplePlanner(sheet, maps_across)
    name = sheet.name
    shape = model.input_shape  # an (H, W) input is one map
    raw_p = sp.add(Panel("Input (raw)", "the numbers as given", sp.place(shape), raw, style="input", step="input"))
    x = raw_p
    if factor != 1.0:
        xp = sp.place(shape)
        x = sp.add(Panel(f"Scaled input = raw × {scale_text}", f"each cell: ={formulas.scale('raw', factor)}" + input_note(sp, x, xp),
                         xp, raw * factor, lambda idx, x=x: formulas.scale(x.ref(idx, name), factor), step="scaled"))
    x = plan_layers(sp, traces, n, x, weights, window)
    if len(x.shape) == 1:
        plan_prediction(sp, x, traces[-1].out[n], name)
    for panel in sp.panels:  # in a prediction only zero padding holds given numbers among formulas (tests/test_verify_compare.py)
        if panel.formula is not None and panel.constants is None:
            panel.constants = False
    sheet.panels, sheet.bands = sp.panels, sp.bands
    return raw_p, (x, traces[-1].out[n])


def plan_layers(sp, traces, n, x, weights, window=(0, 0)):
    """Every layer's panels for sample n, left to right after the panel x (the input); returns the last one's placement.

    Also what a training step sheet lays out for each sample of its batch (sheets/training.py).
    """
    sheet, name = sp.sheet, sp.sheet.name
    for t in traces:
        layer = t.layer
        w = {wname: weights[(layer.name, wname)] for wname in layer.weights}
        label = f"{layer.name} ({layer.class_name})"
        act = getattr(layer, "activation", "linear")
        if layer.class_name == "Activation" and act in VECTOR_ACTIVATIONS:  # the steps take the input as z
            x = plan_vector_activation(sp, x, act, name, label, layer)
            continue
        if isinstance(layer, Conv2D):
            pads = layer.input_padding(t.input_shape)
            if any(pads[0] + pads[1]):
                x = plan_zero_padding(sp, x, pads, name, label, layer)
        headers = [f"filter {f}" for f in range(t.output_shape[-1])] if isinstance(layer, Conv2D) else []
        conv_input = x
        zp = sp.place(t.output_shape)
        z = sp.add(Panel(label + (" pre-activation" if t.pre is not None else ""), caption(layer) + input_note(sp, x, zp), zp,
                         t.out[n] if t.pre is None else t.pre[n],
                         lambda idx, layer=layer, x=x, w=w: layer.formula(idx, x, w, name), headers=headers,
                         step="output" if t.pre is None else "pre", layer=layer, constants=layer.given_cells(t.input_shape)))
        if isinstance(layer, Conv2D) and not sheet.outlines:
            outline_window(sheet, layer, conv_input, z, window)
        if t.pre is None or act == "linear":
            x = z
        elif act in VECTOR_ACTIVATIONS:
            x = plan_vector_activation(sp, z, act, name, label, layer)
        else:
            ap = sp.place(t.output_shape)
            x = sp.add(Panel(f"{label} {act}", f"a = {formulas.activation(act, 'z')}" + input_note(sp, z, ap), ap, t.out[n],
                             lambda idx, z=z, act=act: formulas.activation(act, z.ref(idx, name)), headers=headers,
                             step="activation", layer=layer))
    return x


def input_note(sp, x, p):
    """Where a panel's input is, for its caption, when the reader could lose it: past the first row of maps, or
    in another band of panels (" · input at B4:IC547 (conv2d (Conv2D) relu)"); '' when it is simply on the left."""
    if x.sheet == p.sheet and x.top == p.top and not any(q.layout == "grid" and q.map_rows > 1 for q in (x, p)):
        return ""
    title = next((panel.title for panel in sp.panels if panel.placement is x), None)
    h, w = x.extent
    where = sheet_prefix(x.sheet, p.sheet) + a1_range(x.top, x.left, x.top + h - 1, x.left + w - 1)
    return f" · input at {where}" + (f" ({title})" if title else "")


def outline_window(sheet, layer, x, z, window=(0, 0)):
    """Frame output cell `window` = (i, j) of filter 0 and, for each input channel, the window it reads
    (for a dilated kernel, the span of its taps)."""
    i, j = window
    if not (0 <= i < z.shape[0] and 0 <= j < z.shape[1]):
        raise CnncalcError(f"Invalid value for --window. Expected a cell of {layer.name}'s {z.shape[0]}×{z.shape[1]} output, "
                           f"from 0,0 to {z.shape[0] - 1},{z.shape[1] - 1}. Received {i},{j}")
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    for c in range(x.shape[2]):
        sheet.outlines.append((*x.pos((i * sh, j * sw, c)), *x.pos((i * sh + (kh - 1) * dh, j * sw + (kw - 1) * dw, c))))
    sheet.outlines.append((*z.pos((i, j, 0)), *z.pos((i, j, 0))))


def plan_zero_padding(sp, x, pads, name, label, layer):
    """A panel with the input surrounded by zeros, so every conv window is one contiguous range."""
    (top, bottom), (left, right) = pads
    h, w, _ = x.shape

    def formula(idx):  # None (a constant zero) outside the input
        i, j, c = idx
        inside = top <= i < top + h and left <= j < left + w
        return x.ref((i - top, j - left, c), name) if inside else None

    values = np.pad(x_values(sp, x), ((top, bottom), (left, right), (0, 0)))
    zeros = np.pad(np.zeros(x.shape, dtype=bool), ((top, bottom), (left, right), (0, 0)), constant_values=True)  # where formula is None
    p = sp.place(values.shape)
    return sp.add(Panel(f"{label} zero-padded input", f"'same' padding: {top}/{bottom} rows, {left}/{right} columns of zeros" + input_note(sp, x, p),
                        p, values, formula, step="padded", layer=layer, constants=zeros))


def x_values(sp, placement):
    for panel in sp.panels:
        if panel.placement is placement:
            return panel.values
    raise AssertionError("placement not planned")


VECTOR_ACTIVATIONS = ("softmax", "log_softmax")


def plan_vector_activation(sp, z, act, name, label, layer):
    """Softmax as a spreadsheet does it: m = MAX(z), e = EXP(z - m), s = SUM(e), then p = e / s
    (log_softmax: z - m - LN(s)), subtracting the max as Keras does."""
    if len(z.shape) != 1:
        raise CnncalcError(f"Layer {label} applies {act} to a tensor of shape {z.shape}. Expected a vector (units,) "
                           "for the workbook: add a Flatten or GlobalAveragePooling2D before it")
    zv = x_values(sp, z)
    if act == "softmax":
        m, e, s, out = ops.softmax_steps(zv)
    else:
        m, e, s, out = ops.log_softmax_steps(zv)
    k = z.shape[0]
    e_p = sp.place((k,))
    m_p = Placement(sp.sheet.name, e_p.top + k + 1, e_p.left, (1,), "column")
    s_p = Placement(sp.sheet.name, e_p.top + k + 2, e_p.left, (1,), "column")
    m_ref, s_ref = m_p.ref((0,), name, absolute=True), s_p.ref((0,), name, absolute=True)
    sp.add(Panel(f"{label} exp(z − max z)", "e = EXP(z - m)" + input_note(sp, z, e_p), e_p, e, lambda idx: formulas.softmax_exp(z.ref(idx, name), m_ref),
                 step="softmax_exp", layer=layer))
    sp.sheet.add(cells_block({(m_p.top, m_p.left - 1): Cell("m = max z", style="index"),
                              (s_p.top, s_p.left - 1): Cell("s = Σ e", style="index")}))
    sp.add_cells(Panel("m = max z", "", m_p, np.reshape(m, (1,)), lambda idx: formulas.softmax_max(z.span((0,), (k - 1,), name)),
                       step="softmax_max", layer=layer))
    sp.add_cells(Panel("s = Σ e", "", s_p, np.reshape(s, (1,)), lambda idx: formulas.softmax_sum(e_p.span((0,), (k - 1,), name)),
                       step="softmax_sum", layer=layer))
    p = sp.place((k,))
    if act == "softmax":
        return sp.add(Panel(f"{label} softmax", "p = e / s" + input_note(sp, e_p, p), p, out,
                            lambda idx: formulas.softmax_prob(e_p.ref(idx, name), s_ref), style="prob", step="softmax", layer=layer))
    return sp.add(Panel(f"{label} log_softmax", "z - m - LN(s)" + input_note(sp, z, p), p, out,
                        lambda idx: formulas.log_softmax(z.ref(idx, name), m_ref, s_ref), step="log_softmax", layer=layer))


CAPTIONS = {
    "Conv2D": "z = Σ SUMPRODUCT(window, kernel) + bias",
    "Dense": "z = SUMPRODUCT(input, kernel column) + bias",
    "Flatten": "row-major over (row, column, channel)",
    "Reshape": "the same numbers, row-major, in a new shape",
    "GlobalMaxPooling2D": "MAX of each channel's whole map",
    "GlobalAveragePooling2D": "AVERAGE of each channel's whole map",
    "Dropout": "identity: dropout acts only in training",
    "SpatialDropout2D": "identity: dropout acts only in training",
    "BatchNormalization": "(x - moving_mean) / SQRT(moving_variance + ε) × gamma + beta",
    "Rescaling": "x × scale + offset",
    "ZeroPadding2D": "the input surrounded by zeros",
}


def caption(layer):
    """One line under a panel's title: what each of its cells computes."""
    if layer.class_name in ("MaxPooling2D", "AveragePooling2D", "SumPooling2D"):
        (ph, pw), (sh, sw) = layer.pool_size, layer.strides
        return f"{layer.function} of each {ph}×{pw} window, stride {sh}" + ("" if sh == sw else f"×{sw}")
    if layer.class_name in CAPTIONS:
        return CAPTIONS[layer.class_name]
    act = getattr(layer, "activation", None)
    return f"a = {formulas.activation(act, 'x')}" if act and act not in VECTOR_ACTIVATIONS else layer.class_name


def plan_prediction(sp, out, values, name):
    """The predicted class (first largest output, as numpy's argmax) and its value."""
    span = out.span((0,), (out.shape[0] - 1,), name)
    if sp.col + 2 > MAX_COLS:
        sp.new_band()
    col, top = sp.col, sp.top
    sp.sheet.add(cells_block({
        (top - TOP, col): Cell("Prediction", style="title"),
        (top - TOP + 1, col): Cell("argmax of the last layer", style="caption"),
        (top, col): Cell("class", style="index"),
        (top + 1, col): Cell("output", style="index"),
    }))
    sp.add_cells(Panel("class", "", Placement(name, top, col + 1, (1,), "column"), np.array([np.argmax(values)]),
                       lambda idx: formulas.argmax(span), style="class", step="class"))
    sp.add_cells(Panel("output", "", Placement(name, top + 1, col + 1, (1,), "column"), np.array([np.max(values)]),
                       lambda idx: f"MAX({span})", style="prob", step="class_value"))
    fit_widths(sp.sheet, col, 2, 24)
    k = out.shape[0]
    sp.sheet.charts.append({
        "title": "output of the last layer", "anchor": (top + 3, col),
        "values": (out.top, out.left, out.top + k - 1, out.left),
        "categories": (out.top, out.left - 1, out.top + k - 1, out.left - 1),
    })


def plan_summary(sheet, model, outputs, labels):
    """keras model.summary() rows, then a live table of every sample's output and predicted class."""
    cells = {(0, 0): Cell(f'Model: "{model.name}"', style="title"),
             (2, 0): Cell("Layer (type)", style="header"), (2, 1): Cell("Output Shape", style="header"),
             (2, 2): Cell("Param #", style="header")}
    rows = model.summary_rows()
    for i, (lname, shape, params) in enumerate(rows):
        cells[(3 + i, 0)] = Cell(lname, style="text")
        cells[(3 + i, 1)] = Cell(shape, style="text")
        cells[(3 + i, 2)] = Cell(params, style="int")
    r = 3 + len(rows)
    cells[(r, 0)] = Cell("Total params", style="header")
    cells[(r, 2)] = Cell(model.count_params(), f"=SUM({a1(3, 2)}:{a1(r - 1, 2)})", "int_bold")
    r += 2
    out = outputs[0][0]
    if len(out.shape) == 1:
        cells[(r, 0)] = Cell("Predictions (live: they follow the sample sheets)", style="title")
        r += 1
        k = out.shape[0]
        cells[(r, 0)] = Cell("Sample", style="header")
        for j in range(k):
            cells[(r, 1 + j)] = Cell(f"output {j}", style="header")
        cells[(r, 1 + k)] = Cell("predicted class", style="header")
        if labels is not None:
            cells[(r, 2 + k)] = Cell("label", style="header")
        for n, (o, values) in enumerate(outputs):
            cells[(r + 1 + n, 0)] = Cell(sample_sheet_name(n), style="text")
            for j in range(k):
                cells[(r + 1 + n, 1 + j)] = Cell(float(values[j]), "=" + o.ref((j,), sheet.name), "prob")
            span = f"{a1(r + 1 + n, 1)}:{a1(r + 1 + n, k)}"
            cells[(r + 1 + n, 1 + k)] = Cell(int(np.argmax(values)), "=" + formulas.argmax(span), "class")
            if labels is not None:
                cells[(r + 1 + n, 2 + k)] = Cell(int(labels[n]), style="int")
    sheet.add(cells_block(cells))
    sheet.col_widths.update({c: 16 for c in range(3, 3 + len(out.shape) and out.shape[0] + 2)})
    sheet.col_widths.update({0: 34, 1: 24, 2: 16})
    return sheet


def plan_readme(sheet, model, title, scale, n, maps_across=None):
    lines = [
        (title or f"cnncalc worked example: {model.name}", "title"),
        ("", None),
        ("What this is", "subtitle"),
        ("A convolutional network's forward pass, computed cell by cell with live formulas, exactly as Keras computes it.", "text"),
        ("Every computed cell holds a formula over the cells before it; change any weight or input and every later cell follows.", "text"),
        ("", None),
        ("How to read it", "subtitle"),
        ("Summary: the layers as keras model.summary() prints them, and each sample's prediction.", "text"),
        (f"Sample 1 … Sample {n}: one sheet per input. The network flows left to right, one panel per step.", "text"),
        ("   Input (raw) → scaled input → each layer: pre-activation z, then its activation → prediction (argmax).", "text"),
        ("   Conv2D: z[i, j, f] = Σ over input channels c of SUMPRODUCT(window of channel c, kernel[:, :, c, f]) + bias[f]", "text"),
        ("           (cross-correlation, as Keras does: the kernel is not flipped).", "text"),
        ("   Pooling: MAX (or AVERAGE) of each window; Flatten: row by row, channel fastest, as Keras does.", "text"),
        ("   Dense: z[j] = SUMPRODUCT(input column, kernel column j) + bias[j].", "text"),
        ("   Softmax: m = MAX(z), e = EXP(z − m), p = e / SUM(e) (subtracting the max, as Keras does).", "text"),
        ("Weights: every layer's weights, labelled with Keras's names and shapes (layer/kernel, layer/bias).", "text"),
        ("", None),
        ("Colours", "subtitle"),
        ("Yellow cells are given inputs, blue cells are weights: type over them. White cells are formulas: leave them.", "text"),
        ("Feature maps carry a colour scale (low = white, high = orange), like the chapter's pictures.", "text"),
        ("", None),
        ("Checking it", "subtitle"),
        ("cnncalc verify THIS.xlsx recalculates the workbook in LibreOffice and compares every formula cell with cnncalc's engine.", "text"),
        ("It reads the weights and inputs from this file, so it also checks a workbook whose weights you edited.", "text"),
    ]
    if scale:
        lines.insert(10, (f"   The scaled input is raw × {scale}, written as a formula on each cell.", "text"))
    if maps_across:  # a format-2 layout (format 1's workbooks keep their words)
        lines.insert(10, (f"   A feature map's channels sit {maps_across} maps to a row, then the next row of maps below; "
                          "where a panel's input is not simply on its left, its caption gives the input's cells.", "text"))
    sheet.add(cells_block({(i, 0): Cell(text, style=style) for i, (text, style) in enumerate(lines) if style}))
    sheet.col_widths[0] = max(120, *(-(-len(text) * (3 if style == "title" else 2) // 2) for text, style in lines if style))  # a title is larger


def plan_meta(sheet, model, scale, n, version=FORMAT_VERSION, maps_across=MAPS_ACROSS):
    """The architecture (no weights: those are read from the Weights sheet) so verify can rebuild the model,
    the format version and (format 2) the number of maps across, so it can lay the sheets out as they are."""
    spec = model.to_spec()
    arch = {"name": spec["name"], "input_shape": spec["input_shape"],
            "layers": [{"class_name": l["class_name"], "config": l["config"]} for l in spec["layers"]]}
    if "input_layer" in spec:
        arch["input_layer"] = spec["input_layer"]
    text = json.dumps(arch, separators=(",", ":"))
    chunks = [text[i:i + 30000] for i in range(0, len(text), 30000)]
    cells = {(0, 0): Cell("cnncalc workbook", style="text"), (0, 1): Cell(version, style="int"),
             (1, 0): Cell("scale", style="text"), (1, 1): Cell(scale or "1", style="text"),
             (2, 0): Cell("samples", style="text"), (2, 1): Cell(n, style="int"),
             (3, 0): Cell("architecture", style="text")}
    for i, chunk in enumerate(chunks):
        cells[(3, 1 + i)] = Cell(chunk, style="text")
    if version > 1:
        cells[(LAYOUT_ROW, 0)] = Cell("maps across", style="text")
        cells[(LAYOUT_ROW, 1)] = Cell(maps_across or 0, style="int")  # 0: all in one row
    sheet.add(cells_block(cells))


def read_layout(meta, path):
    """maps_across for re-planning a workbook, from its _cnncalc sheet's values {(row, col): value}: None (all maps
    in one row) for format 1, the recorded number for format 2; an unknown format or a damaged row is refused."""
    version = meta.get((0, 1))
    if meta.get((0, 0)) != "cnncalc workbook" or isinstance(version, bool) or version not in (1, 2):
        shown = " ".join(repr(version).split())[:120]
        raise CnncalcError(f"{path}: unknown cnncalc workbook format. Expected format 1 or {FORMAT_VERSION}. Received {shown}")
    if version == 1:
        return None
    across = meta.get((LAYOUT_ROW, 1))
    if isinstance(across, float) and across.is_integer():
        across = int(across)
    if meta.get((LAYOUT_ROW, 0)) != "maps across" or isinstance(across, bool) or not isinstance(across, int) or not 0 <= across <= MAX_COLS:
        shown = " ".join(repr(across).split())[:120]
        raise CnncalcError(f"{path}: the {META_SHEET} sheet is damaged. Expected the number of maps across (0 to {MAX_COLS:,}) "
                           f"at {META_SHEET}!B{LAYOUT_ROW + 1}. Received {shown}")
    return across or None

