"""The schema of results.json: one dataclass, written once by the run, read by the report."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 3
READABLE_VERSIONS = (2, 3)  # version 2: no provenance block


@dataclass(frozen=True)
class Evaluation:
    """Test accuracy (percent) and mean test loss; `cached`: read from the dense baseline cache."""

    test_acc: float
    test_loss: float
    cached: bool = False

    @classmethod
    def of(cls, metrics: dict[str, float]) -> Evaluation:
        """From `test_metrics`' dict (test_acc, test_loss)."""
        return cls(metrics["test_acc"], metrics["test_loss"])


@dataclass(frozen=True)
class Sparsity:
    requested: float
    measured: float  # the fraction of exact zeros among the pruned weights


@dataclass(frozen=True)
class Seconds:
    fisher: float
    solver: float
    total: float


@dataclass(frozen=True)
class ReportKeys:
    """The experiment preset a run belongs to and the values of the keys it sweeps."""

    experiment: str | None = None
    ablation: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    """Where a result came from: the weights (file and SHA-256, or timm's pretrained name), the
    data source, the code (git commit, or the package version outside a checkout), library
    versions, the UTC time and the host."""

    checkpoint: str | None
    checkpoint_sha256: str | None
    pretrained: str | None  # timm's weights by model name (model.pretrained=true)
    data_source: str
    code_version: str
    versions: dict[str, str]  # python, torch, lightning, hydra-core, chitalab (and timm when installed)
    time_utc: str
    host: str


@dataclass(frozen=True)
class Results:
    """One job's results.json. `method` is the pruner's label ("CHITA (block)"), `pruner` its
    settings; `solver` the solver's statistics; `trajectory` one record per CHITA++ stage or
    gradual pruning step; `pattern_check` the constraint's `check` of the saved weights
    (`holds`, and for N:M the largest nonzero count of a group); `sparsity.requested` is the
    target (the pattern's own when it fixes the budget, as N:M does)."""

    model: str
    dataset: str
    schedule: str
    method: str
    pruner: dict[str, Any]
    pattern: dict[str, Any]
    seed: int
    device: str
    sparsity: Sparsity
    num_pruned_weights: int
    num_nonzero: int
    dense: Evaluation
    pruned: Evaluation
    seconds: Seconds
    peak_memory_mb: dict[str, float | None]
    solver: dict[str, Any] = field(default_factory=dict)
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    report: ReportKeys = field(default_factory=ReportKeys)
    deploy: dict[str, Any] | None = None  # size, MACs (total, per layer) and latency (`chitalab.export.deploy_summary`)
    provenance: Provenance | None = None  # None only in files of schema version 2
    pattern_check: dict[str, Any] = field(default_factory=dict)  # the pattern checked on the saved weights
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """Strict JSON (a NaN or infinity anywhere is refused, as strict parsers would)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        """Read a results dict of a readable schema version (an older one lacks the provenance
        block); another version is refused (ValueError)."""
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"results schema version {version!r}, this chitalab reads {', '.join(map(str, READABLE_VERSIONS))}"
            )
        nested = {"sparsity": Sparsity, "dense": Evaluation, "pruned": Evaluation, "seconds": Seconds}
        values = dict(data)
        for key, kind in nested.items():
            values[key] = kind(**data[key])
        values["report"] = ReportKeys(**data.get("report", {}))
        if data.get("provenance") is not None:
            values["provenance"] = Provenance(**data["provenance"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown results keys: {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Results:
        return cls.from_dict(json.loads(text))
