"""Figures and markdown reports of a results folder (`neuronimp plot`, `neuronimp report`)."""
from neuronimp.report.markdown import make_figures, write_report
from neuronimp.report.tables import find_tables

__all__ = ["find_tables", "make_figures", "write_report"]
