"""Raw features as typed columns, and their encoding into a numeric matrix.

A ``Dataset`` is what both the CRM path (features computed from the database) and the CSV path
(``okyaku model evaluate --csv``) hand to training. Encoding remembers which matrix columns
belong to which raw feature, so that attributions are reported per raw feature
("industry = logistics"), never per one-hot column."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FeatureKind = Literal["numeric", "categorical", "boolean"]
Group = Literal["engagement", "fit", "timing"]
GROUPS: tuple[Group, ...] = ("engagement", "fit", "timing")
FloatArray = npt.NDArray[np.float64]

OTHER = "(other)"
MISSING = "(missing)"


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: FeatureKind
    group: Group
    label: str = ""  # how a person would say it: "meetings in the last 30 days"
    log_scale: bool = False  # heavy-tailed amounts: the model sees log(1 + x), people see x

    @property
    def text(self) -> str:
        return self.label or self.name.replace("_", " ")


@dataclass(frozen=True)
class ExcludedFeature:
    name: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"feature": self.name, "reason": self.reason}


@dataclass
class Dataset:
    """Rows of raw feature values (None = unknown), with optional labels and prediction times."""

    specs: list[FeatureSpec]
    columns: dict[str, list[Any]]
    ids: list[str]
    labels: npt.NDArray[np.int64] | None = None
    times: list[datetime] | None = None
    targets: FloatArray | None = None  # for regression (amount, days)

    def __len__(self) -> int:
        return len(self.ids)

    def spec(self, name: str) -> FeatureSpec:
        return next(s for s in self.specs if s.name == name)

    def subset(self, index: Sequence[int] | npt.NDArray[np.intp]) -> Dataset:
        idx = [int(i) for i in index]
        return Dataset(
            specs=list(self.specs),
            columns={k: [v[i] for i in idx] for k, v in self.columns.items()},
            ids=[self.ids[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx],
            times=None if self.times is None else [self.times[i] for i in idx],
            targets=None if self.targets is None else self.targets[idx],
        )

    def without(self, names: Iterable[str]) -> Dataset:
        drop = set(names)
        return replace(
            self,
            specs=[s for s in self.specs if s.name not in drop],
            columns={k: v for k, v in self.columns.items() if k not in drop},
        )

    def with_values(self, name: str, values: list[Any]) -> Dataset:
        columns = dict(self.columns)
        columns[name] = values
        return replace(self, columns=columns)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass
class TabularEncoder:
    """Numbers pass through (NaN when unknown); categories become one-hot columns for the
    frequent values plus "(other)"; booleans become 0/1. The baseline row is the typical
    record: medians and most frequent values of the training data."""

    max_categories: int = 25
    min_category_count: int = 5
    specs: list[FeatureSpec] = field(default_factory=list)
    column_names: list[str] = field(default_factory=list)
    slices: dict[str, list[int]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    baseline_values: dict[str, Any] = field(default_factory=dict)
    baseline: FloatArray = field(default_factory=lambda: np.zeros(0))
    # Numbers never seen in the fitting data: a constant column (all-NaN columns break boosting).
    unseen: set[str] = field(default_factory=set)

    def fit(self, dataset: Dataset) -> TabularEncoder:
        self.specs = list(dataset.specs)
        self.column_names, self.slices, self.categories, self.baseline_values = [], {}, {}, {}
        self.unseen = set()
        for spec in self.specs:
            values = dataset.columns[spec.name]
            start = len(self.column_names)
            if spec.kind == "categorical":
                counts = Counter(str(v) for v in values if not _is_missing(v))
                kept = [c for c, n in counts.most_common(self.max_categories) if n >= self.min_category_count]
                self.categories[spec.name] = kept
                self.column_names += [f"{spec.name}={c}" for c in kept] + [f"{spec.name}={OTHER}"]
                self.baseline_values[spec.name] = counts.most_common(1)[0][0] if counts else None
            else:
                self.column_names.append(spec.name)
                numbers = _as_floats(values)
                known = numbers[~np.isnan(numbers)]
                if not known.size:
                    self.unseen.add(spec.name)
                    self.baseline_values[spec.name] = None
                elif spec.kind == "boolean":
                    self.baseline_values[spec.name] = bool(known.mean() >= 0.5)
                else:
                    self.baseline_values[spec.name] = float(np.median(known))
            self.slices[spec.name] = list(range(start, len(self.column_names)))
        base = self.transform_columns({s.name: [self.baseline_values[s.name]] for s in self.specs}, 1)
        self.baseline = base[0]
        return self

    @property
    def feature_names(self) -> list[str]:
        return [s.name for s in self.specs]

    def transform(self, dataset: Dataset) -> FloatArray:
        return self.transform_columns(dataset.columns, len(dataset))

    def transform_columns(self, columns: Mapping[str, Sequence[Any]], n_rows: int) -> FloatArray:
        matrix = np.full((n_rows, len(self.column_names)), np.nan)
        for spec in self.specs:
            cols = self.slices[spec.name]
            values = columns.get(spec.name)
            if values is None:
                continue  # a feature the data no longer has: unknown everywhere
            if spec.kind == "categorical":
                block = np.zeros((n_rows, len(cols)))
                index = {c: i for i, c in enumerate(self.categories[spec.name])}
                other = len(cols) - 1
                for row, value in enumerate(values):
                    if _is_missing(value):
                        continue  # unknown category: all zeros
                    block[row, index.get(str(value), other)] = 1.0
                matrix[:, cols] = block
            elif spec.name in self.unseen:
                matrix[:, cols[0]] = 0.0
            else:
                numbers = _as_floats(values)
                matrix[:, cols[0]] = np.sign(numbers) * np.log1p(np.abs(numbers)) if spec.log_scale else numbers
        return matrix


def uninformative(dataset: Dataset) -> list[ExcludedFeature]:
    """Features with no variation in ``dataset``: nothing to learn from them."""
    found = []
    for spec in dataset.specs:
        values = dataset.columns[spec.name]
        distinct = {str(v) for v in values if not _is_missing(v)}
        if not distinct:
            found.append(ExcludedFeature(spec.name, "always unknown in the training data"))
        elif len(distinct) == 1 and all(not _is_missing(v) for v in values):
            found.append(ExcludedFeature(spec.name, "the same value for every training example"))
    return found


def _as_floats(values: Sequence[Any]) -> FloatArray:
    try:
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError):
        pass  # text among the values: convert one by one
    out = np.empty(len(values))
    for i, value in enumerate(values):
        if _is_missing(value):
            out[i] = np.nan
        elif isinstance(value, bool):
            out[i] = 1.0 if value else 0.0
        else:
            try:
                out[i] = float(value)
            except (TypeError, ValueError):
                out[i] = np.nan
    return out


def display_value(spec: FeatureSpec, value: Any) -> Any:
    """A JSON-friendly, readable form of a raw value."""
    if value is None:
        return None
    if spec.kind == "numeric":
        number = float(value)
        if number != number:  # NaN
            return None
        return int(number) if number.is_integer() else round(number, 2)
    if spec.kind == "boolean":
        return bool(value)
    return str(value)


# --- CSV ---------------------------------------------------------------------------------------

_TRUE = {"true", "yes", "y", "t"}
_FALSE = {"false", "no", "n", "f"}
_ENGAGEMENT_WORDS = re.compile(r"touch|session|email|call|meeting|activit|visit|click|open|view|demo|engag|reply")
_TIMING_WORDS = re.compile(r"days|date|_at$|age\b|recen|last|since|month|week")


def read_csv_dataset(
    path: str,
    *,
    label: str,
    positive: str,
    drop: Sequence[str] = (),
) -> tuple[Dataset, list[ExcludedFeature]]:
    """Each row an entity, each column an attribute, ``label`` its outcome.

    Column types are inferred (numbers, booleans, ISO dates, categories); columns that identify
    rows (every value distinct) or never vary are left out and reported."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if label not in header:
        raise ValueError(f"label column {label!r} is not in the CSV (columns: {', '.join(header)})")
    unknown = [d for d in drop if d not in header]
    if unknown:
        raise ValueError(f"--drop names columns the CSV does not have: {', '.join(unknown)}")
    positive_text = positive.strip().lower()
    labels = np.array([1 if (r.get(label) or "").strip().lower() == positive_text else 0 for r in rows])
    excluded = [ExcludedFeature(d, "dropped by --drop") for d in drop]
    specs: list[FeatureSpec] = []
    columns: dict[str, list[Any]] = {}
    for name in header:
        if name == label or name in drop:
            continue
        raw = [(r.get(name) or "").strip() for r in rows]
        spec, values, reason = _infer_column(name, raw)
        if spec is None:
            excluded.append(ExcludedFeature(name, reason))
            continue
        specs.append(spec)
        columns[name] = values
    ids = [str(i) for i in range(len(rows))]
    return Dataset(specs=specs, columns=columns, ids=ids, labels=labels), excluded


_NULLS = {"", "na", "nan", "null", "none", "<na>"}


def _present(value: str) -> bool:
    return value.lower() not in _NULLS


def _infer_column(name: str, raw: list[str]) -> tuple[FeatureSpec | None, list[Any], str]:
    present = [v for v in raw if _present(v)]
    group = guess_group(name)
    if not present:
        return None, [], "empty column"
    if len(set(present)) == 1 and len(present) == len(raw):
        return None, [], "constant column"
    lowered = {v.lower() for v in present}
    if lowered <= (_TRUE | _FALSE):
        values: list[Any] = [v.lower() in _TRUE if _present(v) else None for v in raw]
        return FeatureSpec(name, "boolean", group), values, ""
    numbers = [_parse_float(v) if _present(v) else None for v in raw]
    if all(n is not None for n, v in zip(numbers, raw, strict=True) if _present(v)):
        return FeatureSpec(name, "numeric", group), numbers, ""
    dates = [_parse_date(v) if _present(v) else None for v in raw]
    if all(d is not None for d, v in zip(dates, raw, strict=True) if _present(v)):
        # As a number (days since the earliest date) so that order means something.
        first = min(d for d in dates if d is not None)
        return (
            FeatureSpec(name, "numeric", "timing"),
            [None if d is None else float((d - first).days) for d in dates],
            "",
        )
    distinct = len(set(present))
    if distinct > max(50, len(present) // 10):
        # Too many values to learn from per value (account ids and the like): memorised, not learnt.
        return None, [], f"identifier-like ({distinct} distinct values)"
    return FeatureSpec(name, "categorical", group), [v if _present(v) else None for v in raw], ""


def guess_group(name: str) -> Group:
    lowered = name.lower()
    if _TIMING_WORDS.search(lowered):
        return "timing"
    if _ENGAGEMENT_WORDS.search(lowered):
        return "engagement"
    return "fit"


def _parse_float(value: str) -> float | None:
    try:
        number = float(value.replace(",", "")) if value.count(",") and "." in value else float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _parse_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None
