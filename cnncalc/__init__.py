"""cnncalc: a CNN forward pass computed exactly as Keras does, written out as live spreadsheet formulas."""

__version__ = "0.1.0"

from cnncalc.errors import CnncalcError  # noqa: E402


def __getattr__(name):
    # Lazy: `cnncalc --help` stays instant; numpy and friends load on first use.
    if name == "Sequential":
        from cnncalc.engine.model import Sequential
        return Sequential
    if name == "verify":
        from cnncalc.recalc.verify import verify
        return verify
    if name == "plan_workbook":
        from cnncalc.sheets.workbook import plan_workbook
        return plan_workbook
    if name == "write_plan":
        from cnncalc.sheets.writer import write_plan
        return write_plan
    if name == "chapter_example":
        from cnncalc.companion.examples import chapter_example
        return chapter_example
    raise AttributeError(f"module 'cnncalc' has no attribute {name!r}")
