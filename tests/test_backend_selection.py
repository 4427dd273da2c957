import subprocess
import sys
import types
from pathlib import Path

import pytest

import mpsearch.backends as backends
from mpsearch.backends import backend_names, make_backend
from mpsearch.errors import BackendUnavailableError, InvalidSpecError
from mpsearch.network import load_network, preset

DATA = Path(__file__).parent / "data"


@pytest.fixture
def mlp3():
    return load_network(DATA / "tiny_mlp3.toml")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(backends, "probe_gpu", lambda: (False, "no GPU here (no /dev/nvidia*)"))


@pytest.fixture
def fake_cutlass(monkeypatch):
    """A GPU and an installed CUTLASS backend, faked: records how the factory built it."""
    built = []

    class CutlassBackend:
        def __init__(self, *, cache_dir=None, protocol=None):
            built.append(cache_dir)
            self.protocol = protocol

    monkeypatch.setattr(backends, "probe_gpu", lambda: (True, "GPU found"))
    monkeypatch.setattr(backends, "gpu_model", lambda: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(backends, "cutlass_missing", lambda: None)
    monkeypatch.setitem(sys.modules, "mpsearch.backends.cutlass", types.SimpleNamespace(CutlassBackend=CutlassBackend))
    return built


def test_auto_picks_roofline_without_gpu_or_data_and_says_why(no_gpu, tmp_path, mlp3):
    backend, reason = make_backend("auto", mlp3, data=str(tmp_path))
    assert backend.capabilities.name == "roofline"
    assert reason.startswith("roofline: ")
    assert "no GPU here (no /dev/nvidia*)" in reason
    assert f"no recorded data in {tmp_path}" in reason


def test_auto_picks_replay_when_the_recording_covers_the_network(no_gpu, mlp3):
    backend, reason = make_backend("auto", mlp3, data=str(DATA))
    assert backend.capabilities.name == "replay"
    assert reason.startswith("replay: no GPU here (no /dev/nvidia*); ")
    assert "covers tiny-mlp3" in reason


def test_auto_falls_back_to_roofline_when_the_recording_lacks_the_network(no_gpu):
    backend, reason = make_backend("auto", preset("mlp6"), data=str(DATA / "replay_tiny"))
    assert backend.capabilities.name == "roofline"
    assert "lacks 48 op(s) of mlp6" in reason


def test_auto_models_the_named_device_when_falling_back(no_gpu, tmp_path, mlp3):
    backend, _ = make_backend("auto", mlp3, device="l40s", data=str(tmp_path))
    assert backend.capabilities.device == "NVIDIA L40S"


def test_auto_picks_cutlass_on_a_gpu_and_passes_the_cache_dir(fake_cutlass, mlp3):
    backend, reason = make_backend("auto", mlp3, cache_dir="/tmp/kc")
    assert type(backend).__name__ == "CutlassBackend"
    assert fake_cutlass == ["/tmp/kc"]
    assert reason.startswith("cutlass: NVIDIA H100 80GB HBM3 is here")


def test_auto_skips_the_gpu_when_another_device_is_asked_for(fake_cutlass, mlp3):
    backend, reason = make_backend("auto", mlp3, device="a100", data=str(DATA))
    assert fake_cutlass == []
    assert "the GPU here is NVIDIA H100 80GB HBM3, not a100" in reason


def test_auto_says_when_the_gpu_lacks_the_cutlass_package(monkeypatch, mlp3):
    # the CUTLASS package's own check (missing_dependencies) reports what is not installed
    monkeypatch.setattr(backends, "probe_gpu", lambda: (True, "GPU found"))
    monkeypatch.setattr(backends, "torch_missing", lambda: "PyTorch is not installed")
    lacking = types.SimpleNamespace(missing_dependencies=lambda: ["nvidia-cutlass 4.2 (module cutlass_cppgen)"])
    monkeypatch.setitem(sys.modules, "mpsearch.backends.cutlass", lacking)
    backend, reason = make_backend("auto", mlp3, data=str(DATA))
    assert backend.capabilities.name == "replay"
    assert reason.startswith("replay: missing nvidia-cutlass 4.2 (module cutlass_cppgen) (pip install 'mpsearch[gpu]');")
    with pytest.raises(BackendUnavailableError, match="cannot run here: missing nvidia-cutlass 4.2"):
        make_backend("cutlass", mlp3)


def test_cutlass_without_a_gpu_says_what_is_missing_in_one_line(no_gpu, mlp3):
    with pytest.raises(BackendUnavailableError) as err:
        make_backend("cutlass", mlp3)
    message = str(err.value)
    assert "\n" not in message
    assert "no /dev/nvidia*" in message and "--backend torch, replay or roofline" in message


def test_probe_reports_missing_device_nodes(monkeypatch):
    monkeypatch.setattr(backends.glob, "glob", lambda pattern: [])
    assert backends.probe_gpu() == (False, "no GPU here (no /dev/nvidia*)")
    monkeypatch.setattr(backends.glob, "glob", lambda pattern: ["/dev/nvidia0"] if pattern.startswith("/dev") else [])
    monkeypatch.setattr(backends.ctypes.util, "find_library", lambda name: None)
    usable, why = backends.probe_gpu()
    assert not usable and "libcuda" in why


def test_named_backends_are_built_with_their_options(mlp3, tmp_path):
    roofline, reason = make_backend("roofline", mlp3, device="a100")
    assert roofline.capabilities.device == "NVIDIA A100-SXM4-80GB" and reason.startswith("roofline: ")
    assert make_backend("roofline", mlp3)[0].capabilities.device == "NVIDIA H100 80GB HBM3"
    replay, reason = make_backend("replay", mlp3, data=str(DATA / "replay_tiny"))
    assert replay.capabilities.name == "replay" and "replay_tiny" in reason
    with pytest.raises(BackendUnavailableError, match="no recording in"):
        make_backend("replay", mlp3, data=str(tmp_path))


def test_unknown_backend_names_the_choices(mlp3):
    assert backend_names() == ("auto", "cutlass", "torch", "replay", "roofline")
    with pytest.raises(InvalidSpecError, match="unknown backend 'gpu': use one of auto, cutlass, torch, replay, roofline"):
        make_backend("gpu", mlp3)


def test_the_timing_regime_reaches_the_gpu_backend_and_a_bad_one_is_refused_first(fake_cutlass, mlp3):
    backend, _ = make_backend("cutlass", mlp3, timing="burst")
    assert backend.protocol.regime == "burst" and not backend.against_reference
    alone = make_backend("cutlass", mlp3)[0]
    assert alone.protocol.regime == "sustained" and not alone.against_reference
    paired = make_backend("cutlass", mlp3, timing="paired")[0]
    assert paired.protocol.regime == "sustained" and paired.against_reference
    with pytest.raises(InvalidSpecError, match="--timing must be one of sustained, paired, burst, got 'cold'"):
        make_backend("roofline", mlp3, timing="cold")


def test_auto_measures_with_pytorch_on_a_gpu_host_without_the_cutlass_backend(monkeypatch, mlp3):
    built = []

    class TorchBackend:
        def __init__(self, *, protocol=None):
            built.append(protocol.regime)

    monkeypatch.setattr(backends, "probe_gpu", lambda: (True, "GPU found"))
    monkeypatch.setattr(backends, "gpu_model", lambda: "NVIDIA H200")
    monkeypatch.setattr(backends, "cutlass_missing", lambda: "the CUDA compiler nvcc (not on PATH)")
    monkeypatch.setattr(backends, "torch_missing", lambda: None)
    monkeypatch.setitem(sys.modules, "mpsearch.backends.pytorch", types.SimpleNamespace(TorchBackend=TorchBackend))
    backend, reason = make_backend("auto", mlp3)
    assert type(backend).__name__ == "TorchBackend" and built == ["sustained"]
    assert reason.startswith("torch: NVIDIA H200 is here but the cutlass backend is not (the CUDA compiler nvcc")


def test_choosing_a_backend_loads_no_gpu_or_plot_module():
    # auto's probe (cutlass_missing) and the CPU backends; on a GPU host auto would rightly load CUDA
    code = (
        "import sys; from mpsearch.backends import cutlass_missing, make_backend; from mpsearch.network import preset;"
        f"cutlass_missing(); make_backend('roofline', preset('mlp6')); make_backend('replay', preset('mlp6'), data={str(DATA / 'replay_tiny')!r});"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'cuda', 'cutlass_cppgen', 'matplotlib', 'plotly'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
