"""Running a script in a new Python process, as a user with only transformers would (remote-code checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_fresh_process(script: str, directory: str | os.PathLike, *arguments: str | os.PathLike) -> None:
    """Run ``python -c script *arguments`` in ``directory``: offline, with its own ``HF_HOME`` and no shared module
    cache (remote code is copied from the given folders afresh), no ``PYTHONPATH`` and one thread. Fails the test
    with the end of the script's stderr when it exits with an error."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(Path(directory) / "hf_home"), PYTHONPATH="",
                       OMP_NUM_THREADS="1")
    environment.pop("HF_MODULES_CACHE", None)
    completed = subprocess.run(
        [sys.executable, "-c", script, *(str(argument) for argument in arguments)],
        cwd=directory, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
