"""Assemble the OpenFaaS function folders that stack.yml points at (``build/<name>``):

    python infrastructure/openfaas/build.py            # then: faas-cli up -f infrastructure/openfaas/stack.yml

Each folder gets handler.py (the adapters), the function's app.py, the okyaku package and a
requirements.txt (the common layer's, boto3, and the ML extra or the MCP SDK where template.yaml
attaches their layers). Which function is which comes from template.yaml, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def openfaas_name(code_dir: str) -> str:
    return code_dir.replace("_", "-")


def build(target: Path, template_path: Path = ROOT / "template.yaml") -> dict[str, Path]:
    sys.path.insert(0, str(ROOT / "shared"))
    from okyaku.local.template import load_template_dict

    template = load_template_dict(template_path)
    global_layers = [ref["Ref"] for ref in template["Globals"]["Function"].get("Layers", [])]
    built = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        code_dir = ROOT / properties["CodeUri"]
        folder = target / openfaas_name(code_dir.name)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.copy2(HERE / "handler.py", folder / "handler.py")
        shutil.copy2(code_dir / "app.py", folder / "app.py")
        shutil.copytree(
            ROOT / "shared" / "okyaku", folder / "okyaku", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        layers = global_layers + [ref["Ref"] for ref in properties.get("Layers", [])]
        requirements = [(ROOT / "shared" / "requirements.txt").read_text(), "boto3>=1.34\n"]
        if "OkyakuMlLayer" in layers:
            requirements.append((ROOT / "infrastructure" / "layers" / "requirements-ml.txt").read_text())
        if "OkyakuAnomaliesLayer" in layers:
            # an image has no 250 MB limit: statsmodels (robust STL) comes along here
            requirements.append((ROOT / "infrastructure" / "layers" / "requirements-anomalies.txt").read_text())
            requirements.append("statsmodels>=0.14\n")
        if "OkyakuMcpLayer" in layers:
            requirements.append("mcp>=2.3,<3\n")  # with its own dependencies: an image has room
        (folder / "requirements.txt").write_text("".join(requirements))
        built[folder.name] = folder
    return built


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=HERE / "build")
    args = parser.parse_args()
    for name, folder in build(args.target).items():
        print(f"{name}: {folder}")
    # stack.yml is checked against the same template by tests/unit/test_openfaas.py.
    yaml.safe_load((HERE / "stack.yml").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
