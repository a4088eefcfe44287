"""The static checks AWS's own tooling makes: cfn-lint, ``sam validate --lint`` and ``sam build``.

SAM CLI runs from its own virtual environment (``make sam-setup``, cached per checkout). The
build must produce every layer with its dependencies, and every function must import from its
layers alone: each is imported by a bare interpreter (``python -S``: no site-packages) whose path
is the function's build folder plus its layers' ``python/`` folders, as Lambda lays them out.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from okyaku.local.template import load_template_dict

ROOT = Path(__file__).resolve().parents[2]
SAM_VENV = ROOT / ".venv-sam"
SAM = SAM_VENV / "bin" / "sam"
BUILD = ROOT / ".aws-sam" / "build"
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes: a function's code and all its layers, unzipped
# Held to 85 % of it, so that the next dependency does not break a deployment (issue 27).
SIZE_BUDGET = 0.85
LAMBDA_GLIBC = (2, 26)  # python3.11 runs on Amazon Linux 2
BARE_PYTHON = getattr(sys, "_base_executable", sys.executable)  # the interpreter under .venv


def sam_environment() -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def sam() -> Path:
    if not SAM.exists():
        reason = (SAM_VENV / ".unavailable").read_text().strip() if (SAM_VENV / ".unavailable").exists() else ""
        pytest.skip(f"SAM CLI is not installed ({reason or 'run make sam-setup'}); `make test` installs it")
    return SAM


@dataclass
class Built:
    template: dict[str, object]
    seconds: float

    def layer_paths(self, function_id: str) -> list[Path]:
        """The function's layers, in order, as the built template lists them."""
        resources = self.template["Resources"]
        assert isinstance(resources, dict)
        globals_layers = [ref["Ref"] for ref in self.template["Globals"]["Function"]["Layers"]]  # type: ignore[index]
        own = [ref["Ref"] for ref in resources[function_id]["Properties"].get("Layers", [])]
        return [BUILD / layer / "python" for layer in globals_layers + own]


@pytest.fixture(scope="module")
def built(sam: Path) -> Iterator[Built]:
    BUILD.parent.mkdir(exist_ok=True)
    with (BUILD.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time in this checkout
        started = time.monotonic()
        result = subprocess.run(
            [str(sam), "build", "--cached", "--parallel"],
            cwd=ROOT,
            env=sam_environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        seconds = time.monotonic() - started
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield Built(load_template_dict(BUILD / "template.yaml"), seconds)


def test_cfn_lint_finds_nothing() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), "template.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes(sam: Path) -> None:
    result = subprocess.run(
        [str(sam), "validate", "--lint", "--template", "template.yaml"],
        cwd=ROOT,
        env=sam_environment(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def distributions(path: Path) -> set[str]:
    return {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions(path=[str(path)])}


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]).lower())
    return names


def test_the_build_has_every_layer_with_its_dependencies(built: Built) -> None:
    sam_template = load_template_dict(ROOT / "template.yaml")
    layers = {i: r for i, r in sam_template["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion"}
    assert layers
    requirements = {
        "OkyakuLayer": ROOT / "shared" / "requirements.txt",
        "OkyakuMlLayer": ROOT / "infrastructure" / "layers" / "requirements-ml.txt",
        "OkyakuAnomaliesLayer": ROOT / "infrastructure" / "layers" / "requirements-anomalies.txt",
        "OkyakuMcpLayer": ROOT / "infrastructure" / "layers" / "requirements-mcp.txt",
        "OkyakuMailboxesLayer": ROOT / "infrastructure" / "layers" / "requirements-mailboxes.txt",
    }
    assert set(layers) == set(requirements)
    for layer_id, path in requirements.items():
        python = BUILD / layer_id / "python"
        assert requirement_names(path) <= distributions(python), layer_id
        trimmed = layers[layer_id]["Metadata"]["BuildMethod"] == "makefile"
        if trimmed:
            kept = [p for p in python.rglob("tests") if not p.is_relative_to(python / "numpy")]
            assert kept == [], f"{layer_id} still has test suites"
    assert (BUILD / "OkyakuLayer" / "python" / "okyaku" / "__init__.py").is_file()
    # boto3 comes with the runtime, not the layer (see shared/requirements.txt).
    assert "boto3" not in distributions(BUILD / "OkyakuLayer" / "python")


def _glibc_of(tag: str) -> tuple[int, int] | None:
    """The glibc a wheel tag needs; None when it is not a Linux binary tag."""
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    platform = tag.rsplit("-", 1)[-1]
    for name, version in legacy.items():
        if platform.startswith(name + "_"):
            return version
    found = re.match(r"manylinux_(\d+)_(\d+)_", platform)
    return (int(found.group(1)), int(found.group(2))) if found else None


def test_every_binary_wheel_runs_on_lambdas_glibc(built: Built) -> None:
    """Lambda's python3.11 (Amazon Linux 2, glibc 2.26) cannot load a manylinux_2_28 wheel."""
    for layer in BUILD.glob("*Layer"):
        for wheel in (layer / "python").glob("*.dist-info/WHEEL"):
            tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")]
            needs = [_glibc_of(tag) for tag in tags]
            if any(n is None for n in needs):
                continue  # pure Python (or a tag that needs no glibc)
            assert min(n for n in needs if n) <= LAMBDA_GLIBC, (wheel.parent.name, tags)


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_every_function_fits_lambdas_unzipped_size_limit(built: Built) -> None:
    """Every function of the template (new ones included), its code and its layers, unzipped."""
    rows = []
    for function_id, resource in built.template["Resources"].items():  # type: ignore[attr-defined]
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        code = directory_bytes(BUILD / function_id)
        layers = sum(directory_bytes(path.parent) for path in built.layer_paths(function_id))
        rows.append((function_id, code, layers))
    assert {r[0] for r in rows} == set(FUNCTIONS)
    print(f"\nsam build --cached: {built.seconds:.1f} s")
    print(f"{'function':<26}{'code':>10}{'layers':>14}{'MB':>8}{'of 250 MiB':>12}")
    for function_id, code, layers in rows:
        total = code + layers
        print(f"{function_id:<26}{code:>10,}{layers:>14,}{total / 1e6:>8.1f}{total / LAMBDA_UNZIPPED_LIMIT:>12.1%}")
    over = {
        f: f"{(c + la) / LAMBDA_UNZIPPED_LIMIT:.1%}"
        for f, c, la in rows
        if c + la > SIZE_BUDGET * LAMBDA_UNZIPPED_LIMIT
    }
    assert over == {}, f"over {SIZE_BUDGET:.0%} of Lambda's unzipped limit: {over}"


# What the ML functions do with numpy and scikit-learn (okyaku.predictions: training, calibration,
# cross-fitting, metrics, joblib artefacts), run from the built layers: the layer is trimmed of
# subpackages and symbols (infrastructure/layers/trim.sh), and this is what must still work.
ML_WORKLOAD = """
    import io
    import joblib
    import numpy as np
    import numpy.typing
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    x[::17, 2] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=600) > 0).astype(int)
    imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    logistic = Pipeline([("i", imputer), ("s", StandardScaler()), ("m", LogisticRegression(max_iter=500))])
    models = [
        logistic.fit(x, y),
        HistGradientBoostingClassifier(max_iter=20, early_stopping=True, random_state=0).fit(x, y),
        HistGradientBoostingRegressor(max_iter=20).fit(x, y.astype(float)),
    ]
    folds = list(StratifiedKFold(3).split(x, y))
    train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    p = models[0].predict_proba(x)[:, 1]
    IsotonicRegression(out_of_bounds="clip", increasing=True).fit(p, y).predict(p)
    LogisticRegression(C=1e6, max_iter=1000).fit(p.reshape(-1, 1), y)
    assert roc_auc_score(y, p) > 0.6 and log_loss(y, p) > 0 and brier_score_loss(y, p) > 0
    for model in models:
        buffer = io.BytesIO()
        joblib.dump(model, buffer, compress=3)
        joblib.load(io.BytesIO(buffer.getvalue())).predict(x[:5])
    print("sklearn", LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]).predict([[2.5]])[0])
"""

# What each function does with its layers, beyond importing its handler.
# (Every function with OkyakuMlLayer also runs ML_WORKLOAD.)
EXERCISE = {
    # change points from the layers; no statsmodels there, so the weekday-median baseline
    "AnomaliesFunction": """
        from datetime import date
        from okyaku.anomalies.series import judge_day
        history = [10.0, 12, 11, 9, 10, 3, 2] * 4 + [10, 12, 11, 9, 10, 3, 2]
        judgement = judge_day(history, 40.0, date(2026, 3, 2))
        assert judgement.anomalous and judgement.method == "weekday_median", judgement
        import ruptures
        print("ruptures", ruptures.__version__)
    """,
    # the SDK is imported at the first MCP request, not with app: import it from the layers here
    "McpFunction": """
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from okyaku.mcp.server import tool_definitions
        print("mcp tools", len(tool_definitions()))
    """,
}


FUNCTIONS = sorted(
    i
    for i, r in load_template_dict(ROOT / "template.yaml")["Resources"].items()
    if r["Type"] == "AWS::Serverless::Function"
)
LOADED_FILES = (
    "import json, sys, app; print(json.dumps([getattr(m, '__file__', None) for m in list(sys.modules.values())]))"
)


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_each_built_function_imports_from_its_layers_alone(built: Built, function_id: str) -> None:
    paths = [BUILD / function_id, *built.layer_paths(function_id)]
    uses_ml = BUILD / "OkyakuMlLayer" / "python" in paths
    script = "import okyaku, app\nprint('handler', callable(app.handler))\n"
    script += textwrap.dedent(ML_WORKLOAD if uses_ml else "") + textwrap.dedent(EXERCISE.get(function_id, ""))
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(str(p) for p in paths),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(
        [BARE_PYTHON, "-S", "-c", script],
        cwd=BUILD / function_id,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "handler True" in result.stdout
    if uses_ml:
        assert "sklearn 1" in result.stdout
    # Nothing came from outside the build (the project's venv, the interpreter's site-packages).
    check = subprocess.run(
        [BARE_PYTHON, "-S", "-c", LOADED_FILES],
        cwd=BUILD / function_id,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    stdlib = Path(os.__file__).parent
    loaded = [Path(f) for f in json.loads(check.stdout) if f]
    outside = [f for f in loaded if not any(f.is_relative_to(p) for p in [*paths, stdlib])]
    assert outside == [], outside[:5]
