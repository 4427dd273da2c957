"""mpsearch: find the latency-vs-quality Pareto frontier of per-layer number formats.

The Python API (see :mod:`mpsearch.api`)::

    import mpsearch

    result = mpsearch.search("mlp6", trials=40, backend="roofline", seed=0)
    print(result.front)               # pandas DataFrame; result.study is the optuna.Study
    result.report("reports/mlp6")
    mpsearch.resume("mlp6", trials=20)

``search``, ``resume``, ``enumerate``, ``load``, ``objective``, ``Network`` and ``SearchResult`` are
loaded on first use, so importing this package stays cheap and GPU-free: the CUTLASS backend imports
CUDA modules only when it is constructed, and plots import matplotlib/plotly only when rendered.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "Network": "mpsearch.network",
    "resume": "mpsearch.api",
    "enumerate": "mpsearch.api",
    "load": "mpsearch.api",
    "SearchResult": "mpsearch.api",
    "objective": "mpsearch.objectives",
    "MpsearchError": "mpsearch.errors",
}

__all__ = ["__version__", "search", *_EXPORTS]


class _CallableSearchPackage(types.ModuleType):
    """``mpsearch.search`` names the subpackage of the search machinery (``mpsearch.search.run``,
    ...) and, called, the API's :func:`mpsearch.api.search`. Python binds a subpackage to its
    parent's attribute when it is first imported, which would replace a plain function of that
    name, so the subpackage itself is made callable."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from mpsearch.api import search

        return search(*args, **kwargs)


search = importlib.import_module("mpsearch.search")  # an empty package __init__: cheap
search.__class__ = _CallableSearchPackage


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mpsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
