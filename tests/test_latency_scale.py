"""A GPU study's latencies are ratios to a reference configuration times one stored scale: which
configuration is the reference, the stored record, and how a resume or a worker takes the scale the
study was created with instead of measuring its own."""

from __future__ import annotations

import pytest

import mpsearch
from mpsearch.backends import config_formats
from mpsearch.backends.base import BackendCapabilities, LatencyResult
from mpsearch.backends.scale import LatencyScale, reference_formats, scaled
from mpsearch.backends.timing import Measurement
from mpsearch.errors import StudyMismatchError, UnsupportedConfigError
from mpsearch.network import preset
from mpsearch.search.record import SPEC_KEY, read_spec
from mpsearch.testing import LatencyBackendConformance
from tests.fakes import FakeBackend

MENU = ("fp16", "fp8_e4m3", "int8")


def test_the_reference_takes_the_menus_formats_in_turn_layer_by_layer():
    assert reference_formats(6, MENU, lambda i, f: True) == ["fp16", "fp8_e4m3", "int8"] * 2
    assert reference_formats(2, ("int8",), lambda i, f: True) == ["int8", "int8"]


def test_a_format_a_layer_cannot_run_gives_way_to_the_next_in_turn():
    no_fp8_on_layer_1 = lambda i, f: not (i == 1 and f == "fp8_e4m3")  # noqa: E731
    assert reference_formats(3, MENU, no_fp8_on_layer_1) == ["fp16", "int8", "int8"]


def test_a_layer_that_runs_no_format_of_the_menu_is_refused_naming_it():
    with pytest.raises(UnsupportedConfigError, match="layer 2 runs none of the menu's formats"):
        reference_formats(3, MENU, lambda i, f: i != 2)


def _measurement(samples, sm_mhz=1590):
    rows = [{"after_sample": len(samples), "t_s": 1.0, "sm_mhz": sm_mhz, "power_w": 690.0}]
    return Measurement(list(samples), "sustained", "converged", {"steady": True}, rows, "", 1.2)


def _scale(ms=3.6, device="NVIDIA H200", fingerprint="abc"):
    return LatencyScale.from_measurement(fingerprint, ["fp16", "int8"], _measurement([ms - 0.01, ms, ms + 0.01]), device)


def test_a_scale_is_the_references_median_and_its_record_round_trips_without_telemetry_rows():
    scale = _scale(3.6)
    assert scale.ms == pytest.approx(3.6)
    record = scale.to_record()
    assert "telemetry_rows" not in record["measured"] and record["measured"]["telemetry"]["sm_mhz"]["median"] == 1590
    assert LatencyScale.from_record(record, "study 'x'") == scale
    assert "1590 MHz" in scale.describe() and "fp16,int8" in scale.describe()


@pytest.mark.parametrize("change, named", [
    ({"ms": -1.0}, "has ms=-1.0, not a latency > 0"),
    ({"ms": float("nan")}, "not a latency > 0"),
    ({"ms": True}, "not a latency > 0"),
    ({"reference": "fp16,int8"}, "not a list of formats"),
    ({"device": None}, "lacks its network fingerprint or device"),
])
def test_a_malformed_stored_scale_is_refused_in_one_line_naming_the_study(change, named):
    record = {**_scale().to_record(), **change}
    with pytest.raises(StudyMismatchError, match=named) as err:
        LatencyScale.from_record(record, "study 'x'")
    assert str(err.value).startswith("study 'x': ") and "\n" not in str(err.value)


def test_a_scale_of_another_device_network_or_menu_does_not_fit():
    scale = _scale(device="NVIDIA H200", fingerprint="abc")
    scale.check_fits("abc", 2, "NVIDIA H200", frozenset(MENU), "s")
    with pytest.raises(StudyMismatchError, match="measured on NVIDIA H200, this backend measures NVIDIA H100"):
        scale.check_fits("abc", 2, "NVIDIA H100", frozenset(MENU), "s")
    with pytest.raises(StudyMismatchError, match="belongs to another network"):
        scale.check_fits("xyz", 2, "NVIDIA H200", frozenset(MENU), "s")
    with pytest.raises(StudyMismatchError, match="uses int8, which this backend cannot run"):
        scale.check_fits("abc", 2, "NVIDIA H200", frozenset({"fp16"}), "s")


def test_latency_and_samples_are_the_ratios_times_the_scale():
    ms, samples = scaled([0.5, 0.6, 0.7], _scale(4.0))
    assert ms == pytest.approx(2.4) and samples == pytest.approx((2.0, 2.4, 2.8))


# --- a study keeps one scale -----------------------------------------------------------------------

class ScaledBackend(FakeBackend):
    """A backend whose latencies are ratios times a scale it measures itself (``own_ms``) unless
    it adopts one, as the GPU backends in the sustained regime do."""

    def __init__(self, own_ms: float, timing: str | None = None):
        super().__init__(device="NVIDIA H200")
        self._caps = BackendCapabilities("fake", "measured", "NVIDIA H200", 90, frozenset(MENU))
        self.own_ms, self.timing = own_ms, timing
        self.scales: dict[str, LatencyScale] = {}
        self.measured_scales = 0

    def _scale(self, network):
        key = network.fingerprint()
        if key not in self.scales:
            self.measured_scales += 1
            formats = reference_formats(len(network.layers), MENU, lambda i, f: True)
            self.scales[key] = LatencyScale.from_measurement(key, formats, _measurement([self.own_ms]), self.capabilities.device)
        return self.scales[key]

    def provenance(self):
        return {**super().provenance(), "regime": self.timing or "sustained"}

    def scale_record(self, network):
        return self._scale(network).to_record()

    def adopt_scale(self, network, record, where):
        scale = LatencyScale.from_record(record, where)
        scale.check_fits(network.fingerprint(), len(network.layers), self.capabilities.device, self.capabilities.formats,
                         where)
        self.scales[network.fingerprint()] = scale

    def _refuse_unpriced(self, formats):
        unpriced = sorted(set(formats) - self.capabilities.formats)
        if unpriced:
            raise UnsupportedConfigError(f"the fake backend cannot price {', '.join(unpriced)}")

    def prepare(self, network, menu):
        self._refuse_unpriced(menu)

    def measure(self, network, config):
        self._refuse_unpriced(config_formats(network, config))  # also refuses a configuration of another network
        ratio = super().measure(network, config).ms
        ms, samples = scaled([ratio], self._scale(network))
        return LatencyResult(ms=ms, source="measured", device=self.capabilities.device, samples=samples,
                             extra={"ratio": ratio})


@pytest.fixture
def backends(tmp_path, monkeypatch):
    """Each backend the API makes, in order: the first measures a scale of 2.0 ms, later ones 3.0."""
    monkeypatch.chdir(tmp_path)
    made: list[ScaledBackend] = []

    def make_backend(*args, **kwargs):
        made.append(ScaledBackend(own_ms=2.0 if not made else 3.0, timing=kwargs.get("timing")))
        return made[-1], "fake backend with a scale"
    monkeypatch.setattr("mpsearch.backends.make_backend", make_backend)
    return made


def _latencies_on(study, scale_ms):
    return [t.values[0] / (t.user_attrs["latency_extra"]["ratio"] * scale_ms) for t in study.trials if t.values]


def test_a_new_study_stores_the_scale_its_backend_measured(backends):
    result = mpsearch.search("mlp6", trials=3, backend="fake", seed=0)
    stored = read_spec(result.study).backend["latency_scale"]
    assert stored["ms"] == 2.0 and stored["reference"] == ["fp16", "fp8_e4m3", "int8"] * 2
    assert stored["network_fingerprint"] == preset("mlp6").fingerprint()
    assert _latencies_on(result.study, 2.0) == pytest.approx([1.0] * 3)


def test_an_enumeration_stores_its_scale_and_measures_every_configuration_on_it(backends):
    tiny = {"name": "tiny", "batch": 64, "sizes": [256, 128, 64, 32]}
    result = mpsearch.enumerate(tiny, backend="fake", formats=",".join(MENU))
    assert read_spec(result.study).backend["latency_scale"]["ms"] == 2.0 and backends[0].measured_scales == 1
    assert _latencies_on(result.study, 2.0) == pytest.approx([1.0] * 27)


def test_a_resume_measures_on_the_stored_scale_not_its_own(backends):
    mpsearch.search("mlp6", trials=3, backend="fake", seed=0)
    result = mpsearch.resume("mlp6", trials=3)
    assert backends[1].measured_scales == 0, "the resume measured a scale of its own"
    assert len(result.study.trials) >= 6
    assert _latencies_on(result.study, 2.0) == pytest.approx([1.0] * len(_latencies_on(result.study, 2.0)))


def test_a_worker_measures_on_the_scale_the_study_stored(backends):
    storage = "journal:mlp6.log"
    mpsearch.search("mlp6", trials=4, backend="fake", seed=0, storage=storage, workers=0)
    result, _ = mpsearch.api.run_worker("mlp6", storage, trials=2)
    assert backends[1].measured_scales == 0
    assert [round(v, 9) for v in _latencies_on(result.study, 2.0)] == [1.0, 1.0]


def test_a_stored_scale_that_does_not_parse_stops_the_resume_naming_the_study(backends):
    result = mpsearch.search("mlp6", trials=1, backend="fake", seed=0)
    spec = read_spec(result.study)
    spec.backend["latency_scale"]["ms"] = 0
    result.study.set_user_attr(SPEC_KEY, spec.to_attr())
    with pytest.raises(StudyMismatchError, match="study 'mlp6': the stored latency scale has ms=0"):
        mpsearch.resume("mlp6", trials=1)


def test_a_resume_without_timing_takes_the_stored_regime_and_one_with_another_is_refused(backends):
    mpsearch.search("mlp6", trials=1, backend="fake", seed=0, timing="paired")
    mpsearch.resume("mlp6", trials=1)
    assert backends[1].timing == "paired"
    with pytest.raises(StudyMismatchError, match="timing regime: stored paired, requested sustained"):
        mpsearch.resume("mlp6", trials=1, timing="sustained")



def test_bench_prints_a_paired_latency_with_its_reference_ratio_and_scale():
    from mpsearch.cli.bench import render
    from mpsearch.space import SearchSpace

    net = preset("mlp6")
    config = SearchSpace(net, MENU).parse_config("int8,int8,int8,int8,int8,int8")
    scale = _scale(4.0)
    ms, samples = scaled([0.55, 0.56, 0.57], scale)
    paired = {"ratio": 0.56, "ratio_ci95": [0.55, 0.57], "target_median_ms": 2.1, "reference_median_ms": 3.75,
              "scale": scale.to_record()}
    result = LatencyResult(ms=ms, source="measured", device="NVIDIA H200", samples=samples,
                           extra={"timing": _measurement(list(samples)).summary(), "paired": paired})
    text = render(net, config, result)
    assert "end to end 2.240 ms (measured on NVIDIA H200" in text
    assert ("against the reference fp16,int8: ratio 0.5600 (95% CI 0.5500-0.5700) x its latency 4.0000 ms, "
            f"measured alone {scale.date}; in these rounds 2.1000 ms against 3.7500 ms") in text


class TestScaledBackendConformance(LatencyBackendConformance):
    """The shipped conformance suite checks a backend with a scale (the tests above rely on it)."""

    @pytest.fixture
    def make_backend(self):
        return lambda: ScaledBackend(own_ms=2.0)
