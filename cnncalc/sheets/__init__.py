"""Sheets: A1 cells, formula text, the workbook plan and its writer, Excel limits, the Steps sheet."""
