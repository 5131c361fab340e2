"""Benchmarks behind `cxr-fishr bench`: one module per stage exposing `run(quick: bool) -> dict`."""
