"""The package's loggers, placed under transformers' library logger so that ``transformers.logging.set_verbosity_*``,
``TRANSFORMERS_VERBOSITY`` and transformers' handler settings apply to them as to transformers itself."""

from __future__ import annotations

import logging

from transformers.utils import logging as transformers_logging


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (``vlpretrain.x.y``), named ``transformers.vlpretrain.x.y``."""
    return transformers_logging.get_logger(f"transformers.{name}")
