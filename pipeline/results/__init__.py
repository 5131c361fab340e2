"""`cxr-fishr results SWEEP_DIR`: DomainBed/WILDS-style result tables of one or several sweeps."""

from pipeline.results.tables import build_tables, collect_runs, write_tables

__all__ = ["build_tables", "collect_runs", "write_tables"]
