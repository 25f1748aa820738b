"""Regenerate tests/data/golden_tiny_run.json: the metrics of the seeded tiny reference run
(tests/conftest.py REFERENCE) that tests/test_train.py compares against to catch numerical drift.

    python scripts/update_golden.py

Run it only after an intended change of numerics (model, data, loop, torch version) and say why
in the commit message.
"""

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from tests.conftest import GOLDEN, REFERENCE, compose_config  # noqa: E402
from tests.test_train import comparable  # noqa: E402
from train import train  # noqa: E402
from training.rundir import read_metrics  # noqa: E402

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as run_dir:
        train(compose_config(REFERENCE), run_dir)
        events = comparable(read_metrics(run_dir))
    GOLDEN.write_text(json.dumps({"torch": torch.__version__, "python": sys.version.split()[0],
                                  "overrides": REFERENCE, "events": events}, indent=1) + "\n")
    print(f"wrote {GOLDEN} ({len(events)} events)")
