"""How mpsearch imports code a user named (a plug-in objective, a network builder): a module, or a
``.py`` file by its path.

Module paths resolve as with ``python -m``: against sys.path, plus the current directory, where a
user's own files usually are (the installed ``mpsearch`` console script does not put it on
sys.path). The directory is appended, never prepended, so a file there never shadows an installed
package, and it stays on sys.path: a plug-in's child process copies sys.path to import the same
module. Only names typed on the command line or passed from Python come here, never names read from
a stored study.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def import_user_module(module_name: str) -> ModuleType:
    """``importlib.import_module(module_name)`` with the current directory on sys.path (appended)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    return importlib.import_module(module_name)


def import_user_file(path: Path) -> ModuleType:
    """The ``.py`` file at ``path``, run as a module named after its stem (not added to sys.modules)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def user_attribute(module: ModuleType, attr: str) -> Any:
    """What the dotted ``attr`` (``function`` or ``Class.method``) names in ``module``;
    AttributeError if any part of it is missing (each caller words the error for its option)."""
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part)
    return target
