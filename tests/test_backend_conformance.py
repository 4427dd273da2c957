"""The built-in backends run the shipped conformance suite; and the suite catches a broken backend."""

from pathlib import Path

import pytest

from mpsearch.backends.base import BackendCapabilities, LatencyBackend, LatencyResult
from mpsearch.backends.replay import ReplayBackend
from mpsearch.backends.roofline import RooflineBackend
from mpsearch.space import Config
from mpsearch.testing import LatencyBackendConformance, conformance_network

FIXTURE = Path(__file__).parent / "data" / "replay_tiny"  # SYNTHETIC recording


class TestRooflineH100(LatencyBackendConformance):
    @pytest.fixture
    def make_backend(self):
        return lambda: RooflineBackend("h100")  # prices every format: the refusal tests skip


class TestRooflineA100(LatencyBackendConformance):
    @pytest.fixture
    def make_backend(self):
        return lambda: RooflineBackend("a100")


class TestReplayFixture(LatencyBackendConformance):
    # the default network (an MLP 256-128-64-256 at batch 64) has the fixture's tiny-mlp3 shapes
    @pytest.fixture
    def make_backend(self):
        return lambda: ReplayBackend(FIXTURE)


class _WrongDevice(LatencyBackend):
    """A backend that breaks the contract: its results name another device than its capabilities."""

    @property
    def capabilities(self):
        return BackendCapabilities("wrong", "model", "GPU A", 90, frozenset({"fp16"}))

    def prepare(self, network, menu):
        pass

    def measure(self, network, config):
        return LatencyResult(1.0, "model", "GPU B", per_layer_ms=(1.0,))


def test_the_suite_fails_a_backend_that_breaks_the_contract():
    suite = LatencyBackendConformance()
    network = conformance_network()
    backend = _WrongDevice()
    configs = [Config(network.layer_names, ("fp16",) * 3)]
    with pytest.raises(AssertionError, match="device 'GPU B' but capabilities say 'GPU A'"):
        suite.test_measure_gives_finite_positive_ms_with_source_and_device(backend, network, configs)
    with pytest.raises(AssertionError, match="1 per-layer values for 3 layers"):
        suite.test_per_layer_ms_has_one_entry_per_layer(backend, network, configs)
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        suite.test_prepare_refuses_a_menu_it_cannot_serve(backend, network, ("int8",))
