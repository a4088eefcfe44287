"""Importing the LLM layer stays cheap: the SDK and the model runtime load on first use."""

import json
import subprocess
import sys


def test_import_does_not_load_openai_numpy_or_onnxruntime():
    code = (
        "import sys, json, okyaku.llm, okyaku.llm.health, okyaku.content.service;"
        "print(json.dumps([m for m in ('openai', 'numpy', 'onnxruntime', 'tokenizers') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
