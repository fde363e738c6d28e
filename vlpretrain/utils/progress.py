"""Progress bars for the package's loops over datasets and galleries."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def progress_bar(iterable: Iterable, description: str, total: int | None = None, unit: str = "it"):
    """``tqdm`` over ``iterable`` on stderr, off when stderr is not a terminal or when progress bars are switched off
    in transformers (``vlpretrain --quiet``, ``transformers.utils.logging.disable_progress_bar()``)."""
    from tqdm.auto import tqdm
    from transformers.utils import logging

    disable = not logging.is_progress_bar_enabled() or not sys.stderr.isatty()
    return tqdm(iterable, desc=description, total=total, unit=unit, disable=disable, file=sys.stderr, leave=False)
