"""Shared test set-up: offline Hugging Face, a private cache, tiny model configs and random inputs."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

_CACHE = tempfile.mkdtemp(prefix="vlpretrain-tests-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", _CACHE)
os.environ.setdefault("HF_MODULES_CACHE", os.path.join(_CACHE, "modules"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers.factories import image_text_batch, tiny_lxmert_config  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny models run fastest single-threaded (several threads on a shared machine are much slower); a test
    module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def lxmert_config():
    """A tiny LXMERT config (hidden 32, 2/1/1 layers) with every objective on."""
    return tiny_lxmert_config()


@pytest.fixture
def image_text_inputs(lxmert_config):
    """A batch of 3 random captions and region sets, with some padding in both."""
    return image_text_batch(lxmert_config, batch=3, text_length=7, regions=5, seed=0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_sessionfinish(session, exitstatus):
    """Remove the private Hugging Face cache of this test session."""
    shutil.rmtree(_CACHE, ignore_errors=True)
