"""Samplers, built explicitly and described by JSON-able settings stored with the study.

Optuna 5's default for a multi-objective study changed (TPE with multivariate off); a study
resumed without an explicit sampler could silently switch algorithm, so mpsearch always builds the
sampler from the stored name and settings. On resume the seed is offset by the number of trials
already in the study, so a seeded random sampler does not replay its first proposals.

- ``tpe``: TPESampler(multivariate=True, constant_liar=True): few repeats on categorical spaces and
  no duplicate proposals between parallel workers (independent TPE repeats configurations on categorical
  spaces and proposes the same one to workers asking at once).
- ``nsga2``: NSGAIISampler with a population of 20 (the default 50 spends a 60-trial budget
  almost entirely on its random first generation).
- ``random``: RandomSampler.
- ``gp``: GPSampler (needs torch and scipy).
- ``layerwise``: mpsearch's layer-additive Bayesian sampler
  (:mod:`mpsearch.search.layerwise`); fewest measurements to the front in
  ``benchmarks/results/search_quality_*``.
"""

from __future__ import annotations

from typing import Any, Callable

from mpsearch.errors import InvalidSpecError, UnsupportedConfigError
from mpsearch.space import Config, SearchSpace

SAMPLERS = ("tpe", "nsga2", "random", "gp", "layerwise")


def default_sampler(n_objectives: int) -> str:
    """The sampler a new study gets when none is named: layerwise, which needs the fewest
    measurements in every benchmark (``benchmarks/results/search_quality_*``); it models a front, so a
    single-objective study gets TPE."""
    return "layerwise" if n_objectives >= 2 else "tpe"


def build_sampler(
    name: str,
    *,
    seed: int | None,
    space: SearchSpace,
    directions: list[str],
    exact: dict[int, Callable[[Config], float]] | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The sampler called ``name`` and its full settings (``{"name", "seed", ...}``) for storing.

    ``settings`` (from a stored study) overrides the defaults, so a resumed study gets the same
    algorithm with the same parameters.
    """
    import optuna

    given = dict(settings or {})
    given.pop("name", None)
    given.pop("seed", None)
    if name == "tpe":
        params = {"multivariate": True, "constant_liar": True, "n_startup_trials": 10, **given}
        sampler = optuna.samplers.TPESampler(seed=seed, **params)
    elif name == "nsga2":
        params = {"population_size": 20, **given}
        sampler = optuna.samplers.NSGAIISampler(seed=seed, **params)
    elif name == "random":
        params = {}
        sampler = optuna.samplers.RandomSampler(seed=seed)
    elif name == "gp":
        try:
            import torch  # noqa: F401  (GPSampler imports it lazily and fails late without it)
            import scipy  # noqa: F401
        except ImportError as err:
            raise UnsupportedConfigError(f"sampler gp needs {err.name}: pip install 'mpsearch[gp]', or pick --sampler layerwise") from None
        params = {"n_startup_trials": 10, **given}
        sampler = optuna.samplers.GPSampler(seed=seed, **params)
    elif name == "layerwise":
        from mpsearch.search.layerwise import LayerwiseSampler

        sampler = LayerwiseSampler(space, directions, exact=exact, seed=seed, **given)
        params = sampler.settings()
    else:
        raise InvalidSpecError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")
    return sampler, {"name": name, "seed": seed, **params}
