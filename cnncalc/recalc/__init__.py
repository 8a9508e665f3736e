"""Recalculation by a real spreadsheet engine (LibreOffice headless) and verification against the engine."""
