"""The LatencyBackend conformance suite: the tests every backend must pass, built-in or yours.

It checks the contract written in :mod:`mpsearch.backends.base`. Subclass it in a test module and
give a ``make_backend`` fixture that returns a zero-argument factory (the suite builds fresh
instances, e.g. to check that two of them agree)::

    import pytest
    from mpsearch.testing import LatencyBackendConformance

    class TestMyBackend(LatencyBackendConformance):
        @pytest.fixture
        def make_backend(self):
            return lambda: MyBackend(...)

Optional fixtures to override: ``network`` (default: a 3-layer MLP 256-128-64-256 at batch 64, which
the backend must be able to serve over ``menu``), ``menu`` (default: the device's default menu,
restricted to the formats the backend prices), ``impossible_menu`` (default: one format the backend
does not price; the test is skipped when it prices every format). Needs pytest (``mpsearch[test]``).
"""

from __future__ import annotations

import json
import math
import random
from typing import Callable

import pytest

from mpsearch.backends.base import SOURCES, BackendCapabilities, LatencyBackend, LatencyResult
from mpsearch.errors import MpsearchError, UnsupportedConfigError
from mpsearch.formats import EMULATED, FORMATS, default_menu
from mpsearch.network import Layer, Network
from mpsearch.space import Config, SearchSpace

# How many configurations, besides the uniform ones, the suite measures: enough to mix formats at
# every boundary of a small network, few enough for a GPU backend to finish quickly.
MIXED_CONFIGS = 6


def conformance_network() -> Network:
    """The suite's default network: small enough for any backend to measure quickly."""
    sizes, batch = (256, 128, 64, 256), 64
    layers = tuple(Layer(f"fc{i + 1}", batch, sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1))
    return Network("conformance-mlp3", layers, description="mpsearch.testing's default network")


class LatencyBackendConformance:
    """Base class of the suite; see the module docstring. Not collected by itself (no ``Test`` prefix)."""

    # --- fixtures a subclass may override ---------------------------------------------------------

    @pytest.fixture
    def backend(self, make_backend: Callable[[], LatencyBackend]):
        backend = make_backend()
        yield backend
        backend.close()

    @pytest.fixture
    def network(self) -> Network:
        return conformance_network()

    @pytest.fixture
    def menu(self, backend: LatencyBackend) -> tuple[str, ...]:
        caps = backend.capabilities
        try:
            preferred = [f for f in default_menu(caps.arch) if f in caps.formats]
        except MpsearchError:
            preferred = []
        return tuple(preferred or [f for f in FORMATS if f in caps.formats][:3])

    @pytest.fixture
    def impossible_menu(self, backend: LatencyBackend) -> tuple[str, ...]:
        unpriced = [f for f in FORMATS if f not in backend.capabilities.formats]
        if not unpriced:
            pytest.skip("the backend prices every format; override impossible_menu to test refusal")
        return (unpriced[0],)

    @pytest.fixture
    def configs(self, backend: LatencyBackend, network: Network, menu: tuple[str, ...]) -> list[Config]:
        """The uniform configurations and a seeded sample of mixed ones, after prepare()."""
        space = SearchSpace(network, menu)
        backend.prepare(network, space.menu)
        chosen = [space.config_from_params({d: f for d, _ in space.decisions}) for f in space.menu]
        rng = random.Random(0)
        for _ in range(MIXED_CONFIGS):
            params = {d: rng.choice(space.menu) for d, _ in space.decisions}
            config = space.config_from_params(params)
            if config not in chosen:
                chosen.append(config)
        return chosen

    # --- the contract ----------------------------------------------------------------------------

    def test_capabilities_are_consistent(self, backend: LatencyBackend) -> None:
        caps = backend.capabilities
        assert isinstance(caps, BackendCapabilities)
        assert isinstance(caps.name, str) and caps.name.strip()
        assert caps.source in SOURCES
        assert isinstance(caps.device, str) and caps.device.strip()
        assert isinstance(caps.arch, int) and not isinstance(caps.arch, bool) and caps.arch > 0
        assert caps.formats, "a backend must price at least one format"
        assert caps.formats <= set(FORMATS), f"unknown format names: {sorted(caps.formats - set(FORMATS))}"
        assert caps.emulated <= caps.formats, "emulated formats must be among the priced ones"
        for fmt in caps.formats:
            level = FORMATS[fmt].support_on(caps.arch)
            assert level is not None, f"{fmt} cannot run on sm_{caps.arch}, yet the backend prices it"
            assert (level == EMULATED) == (fmt in caps.emulated), f"{fmt}'s emulated flag disagrees with mpsearch.formats"

    def test_capabilities_are_stable(self, backend: LatencyBackend, make_backend) -> None:
        assert backend.capabilities == backend.capabilities
        other = make_backend()
        try:
            assert other.capabilities == backend.capabilities
        finally:
            other.close()

    def test_measure_gives_finite_positive_ms_with_source_and_device(self, backend: LatencyBackend, network: Network, configs: list[Config]) -> None:
        caps = backend.capabilities
        for config in configs:
            result = backend.measure(network, config)
            assert isinstance(result, LatencyResult)
            assert math.isfinite(result.ms) and result.ms > 0, f"{config}: ms={result.ms}"
            assert result.source == caps.source, f"{config}: source {result.source} but capabilities say {caps.source}"
            assert result.device == caps.device, f"{config}: device {result.device!r} but capabilities say {caps.device!r}"
            assert all(math.isfinite(s) and s > 0 for s in result.samples), f"{config}: samples {result.samples}"
            assert isinstance(result.detail, str)

    def test_per_layer_ms_has_one_entry_per_layer(self, backend: LatencyBackend, network: Network, configs: list[Config]) -> None:
        for config in configs:
            per_layer = backend.measure(network, config).per_layer_ms
            assert len(per_layer) in (0, len(network.layers)), f"{config}: {len(per_layer)} per-layer values for {len(network.layers)} layers"
            assert all(math.isfinite(v) and v >= 0 for v in per_layer), f"{config}: per-layer {per_layer}"

    def test_replayed_and_modelled_latency_is_deterministic(self, backend: LatencyBackend, make_backend, network: Network, configs: list[Config]) -> None:
        if backend.capabilities.measures_real_hardware:
            pytest.skip("measurements vary between runs; determinism is required of replay and model only")
        other = make_backend()
        try:
            other.prepare(network, tuple(sorted({f for c in configs for f in c.formats})))
            for config in configs:
                first = backend.measure(network, config)
                assert backend.measure(network, config) == first, f"{config}: two measures differ"
                assert other.measure(network, config) == first, f"{config}: two instances differ"
        finally:
            other.close()

    def test_prepare_refuses_a_menu_it_cannot_serve(self, backend: LatencyBackend, network: Network, impossible_menu: tuple[str, ...]) -> None:
        with pytest.raises(UnsupportedConfigError) as err:
            backend.prepare(network, impossible_menu)
        message = str(err.value)
        assert message.strip() and "\n" not in message, "the refusal must be one line saying what is wrong"

    def test_measure_refuses_an_unpriced_format(self, backend: LatencyBackend, network: Network, impossible_menu: tuple[str, ...]) -> None:
        config = Config(network.layer_names, tuple(impossible_menu[0] for _ in network.layers))
        with pytest.raises(UnsupportedConfigError):
            backend.measure(network, config)

    def test_measure_refuses_a_config_of_another_network(self, backend: LatencyBackend, network: Network, menu: tuple[str, ...]) -> None:
        names = tuple(f"not-{n}" for n in network.layer_names)
        with pytest.raises(MpsearchError):
            backend.measure(network, Config(names, tuple(menu[0] for _ in names)))

    def test_provenance_is_json_and_agrees_with_capabilities(self, backend: LatencyBackend) -> None:
        prov = backend.provenance()
        caps = backend.capabilities
        assert json.loads(json.dumps(prov)) == prov, "provenance must survive a JSON round trip (it is stored with studies)"
        assert (prov.get("backend"), prov.get("source"), prov.get("device"), prov.get("arch")) == (
            caps.name, caps.source, caps.device, caps.arch,
        )

    def test_a_scale_record_is_json_and_adopting_it_back_keeps_it(self, backend: LatencyBackend, network: Network,
                                                                   configs: list[Config]) -> None:
        record = backend.scale_record(network)
        if record is None:
            pytest.skip("the backend's latencies are not ratios to a reference configuration: it has no scale")
        assert json.loads(json.dumps(record)) == record, "a scale record must be JSON-able (it is stored with studies)"
        backend.adopt_scale(network, record, "conformance")
        assert backend.scale_record(network) == record, "adopting a backend's own scale record must leave it as it was"

    def test_result_attrs_are_json(self, backend: LatencyBackend, network: Network, configs: list[Config]) -> None:
        attrs = backend.measure(network, configs[0]).as_attrs()
        assert json.loads(json.dumps(attrs)) == attrs, "trial attributes must be JSON-able"
