"""The real model server of the tests: llama.cpp's ``llama-server`` with SmolLM2-135M-Instruct,
served under the name ``llama3.1`` as Ollama would be.

``make llm-setup`` (part of ``make test``) builds the binary and unpacks the model once, into
``~/.cache/okyaku`` (``infrastructure/scripts/llama-server-setup.sh``). The tests start the server
like Postgres: a subprocess on a free loopback port, stopped at the end of the session.

The model is weak on purpose: what it says is a fuzzer for our grounding, never a fact."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = ROOT / "infrastructure" / "scripts" / "llama-server-setup.sh"
TOOLS_TEMPLATE = ROOT / "tests" / "data" / "llm" / "chatml-tools.jinja"
MODEL_ALIAS = "llama3.1"
# Two slots of 4,096 tokens each: the context Ollama gives a model by default, so a prompt that
# would be cut there is cut here too.
CONTEXT_PER_SLOT = 4096
SLOTS = 2


def _cache_dir() -> Path:
    base = os.environ.get("OKYAKU_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "okyaku"
    )
    return Path(base)


@dataclass(frozen=True)
class LlamaInstall:
    server: Path
    model: Path


def find_install() -> LlamaInstall:
    """The binary and the model, from ``OKYAKU_LLAMA_SERVER``/``OKYAKU_LLAMA_MODEL`` or the cache.
    Raises with what to run when they are missing (never a silent skip)."""
    server = os.environ.get("OKYAKU_LLAMA_SERVER")
    model = os.environ.get("OKYAKU_LLAMA_MODEL")
    cache = _cache_dir()
    if not server:
        found = sorted(cache.glob("llama-server-*/llama-server"))
        server = str(found[-1]) if found else ""
    if not model:
        models = sorted((cache / "models").glob("*.gguf"))
        model = str(models[0]) if models else ""
    if not server or not Path(server).is_file() or not model or not Path(model).is_file():
        raise RuntimeError(
            f"llama-server or its model is missing under {cache}: run `make llm-setup` "
            f"(or bash {SETUP_SCRIPT.relative_to(ROOT)}) once; it builds llama.cpp's server (~9 min)"
        )
    return LlamaInstall(Path(server), Path(model))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """One ``llama-server`` process. ``base_url`` is the OpenAI-compatible root (``…/v1``)."""

    def __init__(
        self,
        install: LlamaInstall,
        *,
        chat_template_file: Path | None = None,
        context_per_slot: int = CONTEXT_PER_SLOT,
        slots: int = SLOTS,
        embeddings: bool = False,
    ) -> None:
        self.install = install
        self.port = _free_port()
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root_url}/v1"
        self.context_per_slot = context_per_slot
        self._log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)  # noqa: SIM115
        args = [
            str(install.server),
            "-m",
            str(install.model),
            "--alias",
            MODEL_ALIAS,
            "--jinja",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "-c",
            str(context_per_slot * slots),
            "-np",
            str(slots),
            "-t",
            "2",
            "--no-webui",
            "--seed",
            "7",
        ]
        if chat_template_file is not None:
            args += ["--chat-template-file", str(chat_template_file)]
        if embeddings:
            args.append("--embeddings")
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> LlamaServer:
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"llama-server did not become healthy in {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = Path(self._log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def setup_command() -> list[str]:
    """What ``make llm-setup`` runs (for a test that wants to say so)."""
    return [shutil.which("bash") or "bash", str(SETUP_SCRIPT)]
