"""A folder of runs as a pandas DataFrame, for notebooks: `chitalab.report.load_runs(folder)`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import require_extra
from ..outputs import RESULTS_FILE, dotted_keys
from ..run.results import Results

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def load_runs(folder: str | Path) -> pd.DataFrame:
    """One row per results.json under `folder` (sorted by path): `run_dir`, then every scalar of
    the results as a dotted column (`pruned.test_acc`, `sparsity.requested`, `pruner.l2`,
    `provenance.code_version`, ...); lists (the per-stage `trajectory`) are left out.
    Files that are not chitalab results are skipped with a warning."""
    require_extra("pandas", "report", "chitalab.report.load_runs")
    import pandas as pd

    rows = []
    for path in sorted(Path(folder).rglob(RESULTS_FILE)):
        try:
            results = Results.from_json(path.read_text())
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            log.warning("skipping %s: not a chitalab results file (%s)", path, err)
            continue
        flat = {k: v for k, v in dotted_keys(results.to_dict()).items() if not isinstance(v, list)}
        rows.append({"run_dir": str(path.parent), **flat})
    return pd.DataFrame(rows)
