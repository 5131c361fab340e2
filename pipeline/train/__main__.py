"""``python -m pipeline.train INGEST --config C --out D [--resume]``: one training run, the entry point torchrun
launches on every rank (``torchrun --nproc_per_node N -m pipeline.train ...``, or ``cxr-fishr train --nproc N``)."""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
