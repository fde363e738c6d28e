"""Optional dependencies, imported only when a feature needs them.

``importlib`` is used instead of an ``import`` statement on purpose: transformers' remote-code loader
requires every module named by an ``import`` statement to be installed, and a processor loaded from the Hub
should not need PyPI's ``av``, ``h5py`` or ``lmdb`` unless it decodes videos or reads those files.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_INSTALL_HINTS = {
    "av": "pip install av  (or the package extra: pip install 'vlpretrain[video]')",
    "h5py": "pip install h5py  (or: pip install 'vlpretrain[features]')",
    "lmdb": "pip install lmdb  (or: pip install 'vlpretrain[features]')",
    "msgpack": "pip install msgpack",
}


def optional_import(name: str) -> ModuleType:
    """Import ``name`` or raise ``ImportError`` saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        hint = _INSTALL_HINTS.get(name, f"pip install {name}")
        raise ImportError(f"this feature needs the optional package {name!r}: {hint}") from error
