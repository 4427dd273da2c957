import itertools

import optuna
import pytest

from mpsearch.errors import InvalidSpecError
from mpsearch.network import Layer, Network, preset
from mpsearch.space import Config, SearchSpace, capacity


def test_capacity_of_mlp6_matches_the_worked_example():
    net = preset("mlp6")
    space = SearchSpace(net, ("fp16", "int8", "int4"))
    assert capacity(net, space.parse_config("fp16," * 5 + "fp16")) == 64512 * 16 == 1_032_192
    assert capacity(net, space.parse_config("int8," * 5 + "int8")) == 516_096
    assert capacity(net, space.parse_config("int4,fp16,fp16,fp16,fp16,fp16")) == 638_976


def test_capacity_weighs_each_layer_by_its_input_dimension():
    net = Network("t", (Layer("a", 1, 8, 100), Layer("b", 1, 8, 10)))
    assert capacity(net, Config(("a", "b"), ("int8", "fp16"))) == 100 * 8 + 10 * 16


def test_tied_layers_are_one_decision_and_share_a_format():
    net = Network("t", (Layer("q", 1, 8, 8), Layer("k", 1, 8, 8), Layer("o", 1, 8, 8)), groups=(("qk", ("q", "k")),))
    space = SearchSpace(net, ("fp16", "int8"))
    assert [name for name, _ in space.decisions] == ["qk", "o"]
    assert space.size == 4
    configs = list(space.all_configs())
    assert len(set(configs)) == 4 and all(c["q"] == c["k"] for c in configs)
    with pytest.raises(InvalidSpecError, match="tied group qk"):
        space.parse_config("fp16,int8,fp16")


def test_all_configs_enumerates_the_product_once_each():
    space = SearchSpace(preset("mlp6"), ("fp16", "fp8", "int8"))
    configs = list(space.all_configs())
    assert len(configs) == len(set(configs)) == 729 == space.size
    assert {c.formats for c in configs} == set(itertools.product(("fp16", "fp8_e4m3", "int8"), repeat=6))


def test_params_and_configs_round_trip_through_an_optuna_trial():
    space = SearchSpace(preset("mlp6"), ("fp16", "fp8", "int8"))
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    config = space.suggest(trial)
    assert space.config_from_params(trial.params) == config
    assert space.params_from_config(config) == trial.params
    assert config.key == ",".join(config.formats)


def test_parse_config_checks_length_and_menu():
    space = SearchSpace(preset("mlp6"), ("fp16", "int8"))
    with pytest.raises(InvalidSpecError, match="gives 2 formats; network mlp6 has 6 layers"):
        space.parse_config("fp16,int8")
    with pytest.raises(InvalidSpecError, match="unknown format"):
        space.parse_config("fp16,int9,fp16,fp16,fp16,fp16")
    with pytest.raises(InvalidSpecError, match="not in the menu"):
        space.config_from_params({f"fc{i}": "fp8" for i in range(1, 7)})
