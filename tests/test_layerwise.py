"""The layer-additive Bayesian sampler: model, Pareto DP, proposals, failures, seeds, workers."""

from __future__ import annotations

import itertools
import json

import numpy as np
import optuna
import pytest

from mpsearch.errors import InvalidSpecError
from mpsearch.network import Layer, Network, preset
from mpsearch.search.layerwise import LayerwiseSampler
from mpsearch.search.layerwise.features import Structure
from mpsearch.search.layerwise.model import fit
from mpsearch.search.layerwise.pareto import pareto_dp
from mpsearch.space import SearchSpace, capacity

optuna.logging.set_verbosity(optuna.logging.WARNING)

MENU = ("fp16", "fp8_e4m3", "int8")
DIRS = ["minimize", "maximize"]


def _net(n_layers: int, chained: bool = True, groups=()) -> Network:
    sizes = [4096, 2048, 8192, 1024, 4096, 2048, 1024, 512][: n_layers + 1]
    layers = tuple(Layer(f"l{i}", 256, sizes[i + 1], sizes[i]) for i in range(n_layers))
    return Network("t", layers, tuple(groups), chained)


def _additive_latency(space: SearchSpace, seed: int = 0):
    """A latency that is exactly Σ per-layer terms + Σ chained-boundary terms (random, positive)."""
    rng = np.random.default_rng(seed)
    net = space.network
    unary = {(l.name, f): rng.uniform(0.1, 2.0) for l in net.layers for f in space.menu}
    edge = {(a, f, g): rng.uniform(0.0, 0.2) for a in net.layer_names for f in space.menu for g in space.menu}

    def latency(config) -> float:
        fmts = config.formats
        total = sum(unary[(name, f)] for name, f in zip(net.layer_names, fmts))
        if net.chained:
            total += sum(edge[(net.layer_names[i], fmts[i], fmts[i + 1])] for i in range(len(fmts) - 1))
        return total

    return latency


def _study(space: SearchSpace, latency, sampler, n_trials: int, fail=lambda c: False):
    study = optuna.create_study(directions=DIRS, sampler=sampler)
    configs = []

    def objective(trial):
        config = space.suggest(trial)
        configs.append(config)
        if fail(config):
            raise RuntimeError("unsupported")
        return latency(config), float(capacity(space.network, config))

    study.optimize(objective, n_trials=n_trials, catch=(RuntimeError,))
    return study, configs


def _sampler(space: SearchSpace, seed: int | None = 0, **settings) -> LayerwiseSampler:
    return LayerwiseSampler(space, DIRS, exact={1: lambda c: float(capacity(space.network, c))}, seed=seed, **settings)


@pytest.mark.parametrize("chained", [True, False])
def test_model_recovers_an_additive_function_exactly(chained):
    space = SearchSpace(_net(4, chained), MENU)
    latency = _additive_latency(space)
    st = Structure(space)
    index = {f: i for i, f in enumerate(MENU)}
    all_codes = np.array([[index[f] for f in c.formats] for c in space.all_configs()])
    truth = np.array([latency(c) for c in space.all_configs()])
    rng = np.random.default_rng(1)
    train = rng.choice(len(all_codes), 60, replace=False)
    post = fit(st.design(all_codes[train]), st.onehot(all_codes[train]), truth[train], st, 4, rng, None)
    predicted = st.predict(all_codes, post.mean[None, :])[0]
    # Every one of the 81 configurations, 21 of them never seen, to within 0.1 %.
    np.testing.assert_allclose(predicted, truth, rtol=1e-3)
    assert post.noise.max() < 1e-2 * truth.std()


def test_a_step_in_effective_bits_is_predicted_where_it_was_never_measured():
    """An accuracy proxy that drops by 0.03 below 70 % of the full capacity (a global bit budget):
    fitted on 60 configurations, the model predicts the other 669 to within a fifth of the step,
    because configurations with the same effective bits share the step whichever 8-bit format
    they use (a model whose non-additive part knows only decisions and format mixes: 0.008)."""
    space = SearchSpace(_net(6), MENU)
    st = Structure(space)
    full = 16 * sum(l.k for l in space.network.layers)
    err = np.array([0.0, 1.0, 0.6])  # per format of MENU
    sens = np.array([0.5, 1.0, 0.8, 0.6, 1.2, 2.0])
    codes = np.array(list(itertools.product(range(3), repeat=6)))
    below = np.array([capacity(space.network, c) < 0.7 * full for c in space.all_configs()])
    truth = 1.0 - 0.01 * (err[codes] * sens).sum(axis=1) - 0.03 * below
    errors, spreads = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        train = rng.choice(len(codes), 60, replace=False)
        rest = np.setdiff1d(np.arange(len(codes)), train)
        post = fit(st.design(codes[train]), st.onehot(codes[train]), -truth[train], st, 4, rng, None)
        mean, spread = post.residual.mean_std(st.onehot(codes[rest]))
        predicted = -(st.predict(codes[rest], post.mean[None, :])[0] + mean)
        errors.append(np.sqrt(np.mean((predicted - truth[rest]) ** 2)))
        spreads.append(np.median(spread))
    assert np.mean(errors) < 0.2 * 0.03
    assert max(spreads) < 0.2 * 0.03  # and it knows: no spread wide enough to rank by


@pytest.mark.parametrize("n_obj", [2, 3])
def test_pareto_dp_returns_exactly_the_brute_force_front(n_obj):
    import moocore

    rng = np.random.default_rng(n_obj)
    d, f = 5, 3
    unary = rng.uniform(0, 1, (d, f, n_obj))
    pair = rng.uniform(0, 0.3, (d - 1, f, f, n_obj))
    codes, vals, thinned = pareto_dp(unary, pair)
    assert not thinned
    every = np.array(list(itertools.product(range(f), repeat=d)))
    totals = unary[np.arange(d), every].sum(axis=1) + sum(pair[i, every[:, i], every[:, i + 1]] for i in range(d - 1))
    front = {tuple(r) for r in every[moocore.is_nondominated(totals)]}
    assert {tuple(r) for r in codes} == front
    # The values it reports are those configurations' true totals.
    lookup = {tuple(r): t for r, t in zip(every, totals)}
    np.testing.assert_allclose(vals, np.array([lookup[tuple(r)] for r in codes]))


def test_proposals_are_valid_distinct_configurations_until_the_space_is_exhausted():
    space = SearchSpace(_net(2), MENU)  # 9 configurations
    study, configs = _study(space, _additive_latency(space), _sampler(space), 12)
    keys = [c.key for c in configs]
    assert len(set(keys[:9])) == 9  # every configuration once before any repeat
    for trial in study.trials:
        assert set(trial.params) == {"l0", "l1"}
        assert space.config_from_params(trial.params).key in keys


def test_proposals_never_repeat_a_completed_configuration_in_a_larger_space():
    space = SearchSpace(_net(5), MENU)  # 243 configurations
    _, configs = _study(space, _additive_latency(space), _sampler(space), 30)
    assert len({c.key for c in configs}) == 30


def test_failed_trials_do_not_break_the_search_and_are_not_proposed_again():
    space = SearchSpace(_net(4), MENU)
    # Every configuration with int8 in the first layer fails (e.g. a kernel that cannot run).
    study, configs = _study(space, _additive_latency(space), _sampler(space), 25, fail=lambda c: c["l0"] == "int8")
    states = [t.state for t in study.trials]
    failed_at = states.index(optuna.trial.TrialState.FAIL)
    assert failed_at < 20  # the search went on after a failure...
    assert len(study.trials) == 25
    assert len({c.key for c in configs}) == 25  # ...without retrying what failed
    assert sum(s == optuna.trial.TrialState.COMPLETE for s in states) >= 5
    assert len(study.best_trials) >= 1


def test_the_same_seed_gives_the_same_proposals_and_another_seed_others():
    space = SearchSpace(_net(4), MENU)
    latency = _additive_latency(space)
    runs = [[c.key for c in _study(space, latency, _sampler(space, seed=s), 10)[1]] for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_running_trial_is_not_proposed_again_to_another_worker():
    space = SearchSpace(_net(4), MENU)
    latency = _additive_latency(space)
    study, _ = _study(space, latency, _sampler(space), 8)
    # Two workers share the study, each with its own sampler instance and the same seed.
    workers = [optuna.load_study(study_name=study.study_name, storage=study._storage, sampler=_sampler(space))
               for _ in range(2)]
    completed = {space.config_from_params(t.params).key for t in study.trials}
    running = [space.suggest(w.ask()) for w in workers for _ in range(3)]
    assert len({c.key for c in running}) == 6
    assert not completed & {c.key for c in running}


def test_tied_groups_are_one_decision_and_their_layers_share_a_format():
    net = _net(4, groups=(("pair", ("l1", "l3")),))
    space = SearchSpace(net, MENU)
    study, configs = _study(space, _additive_latency(space), _sampler(space), 15)
    assert set(study.trials[-1].params) == {"l0", "pair", "l2"}
    assert all(c["l1"] == c["l3"] for c in configs)
    assert len({c.key for c in configs}) == 15


def test_three_objectives_with_a_modelled_custom_objective():
    space = SearchSpace(_net(4), MENU)
    latency = _additive_latency(space, 0)
    error = _additive_latency(space, 1)  # a plug-in accuracy proxy, modelled like latency
    sampler = LayerwiseSampler(space, ["minimize", "maximize", "minimize"],
                               exact={1: lambda c: float(capacity(space.network, c))}, seed=0)
    study = optuna.create_study(directions=["minimize", "maximize", "minimize"], sampler=sampler)
    study.optimize(lambda t: (lambda c: (latency(c), capacity(space.network, c), error(c)))(space.suggest(t)),
                   n_trials=15)
    assert len({t.params.values().__repr__() for t in study.trials}) == 15


def test_front_confidence_is_high_after_measuring_everything_and_low_after_three_trials():
    space = SearchSpace(_net(3), MENU)  # 27 configurations
    latency = _additive_latency(space)
    early, _ = _study(space, latency, _sampler(space), 3)
    assert _sampler(space).front_confidence(early, 0.99) < 0.5
    full, _ = _study(space, latency, _sampler(space), 27)
    assert _sampler(space).front_confidence(full, 0.99) == 1.0


def test_the_search_scales_to_the_70_layer_preset():
    space = SearchSpace(preset("llama8b-10blocks-prefill"), MENU)
    layer = {l.name: l for l in space.network.layers}
    rate = {"fp16": 1.0, "fp8_e4m3": 0.5, "int8": 0.6}

    def latency(config):  # an additive stand-in: FLOPs at a per-format rate
        return sum(layer[n].flops * rate[f] for n, f in config.items()) * 1e-12

    _, configs = _study(space, latency, _sampler(space), 8)
    assert len({c.key for c in configs}) == 8


def test_settings_are_json_and_rebuild_the_same_sampler():
    space = SearchSpace(_net(3), MENU)
    sampler = _sampler(space, n_posterior_samples=8)
    settings = json.loads(json.dumps(sampler.settings()))
    assert settings["n_posterior_samples"] == 8
    assert _sampler(space, **settings).settings() == sampler.settings()


@pytest.mark.parametrize("kwargs, words", [
    ({"directions": ["minimize"]}, "at least 2 objectives"),
    ({"directions": ["minimize", "up"]}, "directions[1]"),
    ({"exact": {5: len}}, "exact objective index"),
    ({"n_thompson": 3}, "unknown layerwise sampler setting 'n_thompson'"),
    ({"max_candidates": 0}, "max_candidates must be an integer >= 1"),
])
def test_bad_arguments_are_one_line_errors_that_name_the_problem(kwargs, words):
    space = SearchSpace(_net(3), MENU)
    args = {"directions": DIRS, **kwargs}
    directions = args.pop("directions")
    with pytest.raises(InvalidSpecError) as err:
        LayerwiseSampler(space, directions, **args)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_a_study_with_other_objective_counts_is_refused_with_a_message():
    space = SearchSpace(_net(3), MENU)
    study = optuna.create_study(directions=["minimize", "maximize", "minimize"])
    trial = study.ask()
    config = space.suggest(trial)
    study.tell(trial, (1.0, 2.0, 3.0))
    study.sampler = _sampler(space)
    with pytest.raises(InvalidSpecError, match="3 objective values"):
        space.suggest(study.ask())
    assert config is not None


def test_the_model_proposes_from_the_first_trial_without_a_startup_design():
    space = SearchSpace(_net(4), MENU)
    _, configs = _study(space, _additive_latency(space), _sampler(space, n_startup_trials=0), 5)
    assert len({c.key for c in configs}) == 5


def test_a_transformer_block_shares_weights_between_layers_of_one_shape():
    space = SearchSpace(preset("llama8b-10blocks-prefill"), MENU)
    st = Structure(space)
    # 4 GEMM shapes (q/o, k/v, gate/up, down) and 2 conversion shapes (k = 4096, 14336): 18 op weights
    # for 70 layers, where per-layer terms would need 210.
    lo, hi = st.offsets["op"]
    assert hi - lo == 4 * 3 + 2 * 2
    assert st.offsets["out"][1] - st.offsets["out"][0] == 0  # unchained: no boundary weights


def test_the_sampler_imports_and_proposes_without_scipy():
    # scipy is not a core dependency (it served two Cholesky solves): the sampler runs on numpy alone.
    from tests.test_import_light import run_blocked

    code = """
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from tests.test_layerwise import MENU, DIRS, _net, _additive_latency, _sampler
from mpsearch.space import SearchSpace, capacity
space = SearchSpace(_net(4), MENU)
latency = _additive_latency(space)
study = optuna.create_study(directions=DIRS, sampler=_sampler(space))
keys = []
def objective(trial):
    config = space.suggest(trial)
    keys.append(config.key)
    return latency(config), float(capacity(space.network, config))
study.optimize(objective, n_trials=14)
assert not any(m.split(".")[0] == "scipy" for m in sys.modules)
print(len(keys), len(set(keys)))
"""
    r = run_blocked(("scipy",), code)
    assert r.returncode == 0, r.stderr[-2000:]
    # 14 proposals, all distinct (past the first random ones, the model proposes).
    assert r.stdout.split()[-2:] == ["14", "14"]
