"""Ingest: DICOM or PNG/JPEG (+ metadata CSV) -> manifest.parquet, image cache, rejects.csv, summary.json.

``run(*, source, out, metadata=None, config=None, size=None) -> IngestResult`` (see docs/ingest.md).
"""

from pipeline.ingest.config import IngestConfig, MetadataMapping, load_ingest_config
from pipeline.ingest.runner import IngestResult, run

__all__ = ["IngestConfig", "IngestResult", "MetadataMapping", "load_ingest_config", "run"]
