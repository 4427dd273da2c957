"""``--backend torch`` on CPU, with a fake torch: its refusals, provenance and op mapping. (Its
kernels' correctness runs on a GPU: tests/gpu/test_torch_gpu.py.)"""

from __future__ import annotations

import json
import sys
import types

import pytest

from mpsearch.backends import pytorch
from mpsearch.errors import BackendUnavailableError, UnsupportedConfigError
from mpsearch.network import Op


def _gemm(fmt, out="fp16", m=64, n=128, k=256):
    return Op("gemm", "fc", m, n, k, fmt, out)


def test_int4_is_refused_by_name_with_the_reason_and_where_to_go():
    message = pytorch.refusal("int4")
    assert "int4" in message and "_weight_int4pack_mm" in message and "--backend cutlass" in message
    assert "\n" not in message
    with pytest.raises(UnsupportedConfigError, match="cannot run int4"):
        pytorch.gemm_plan("int4", "fp16")


@pytest.mark.parametrize("in_fmt, out_fmt, call, writes", [
    ("fp16", "fp16", "torch.addmm", "fp16"),
    ("fp16", "fp8_e4m3", "torch.addmm", "fp16"),  # then one conversion pass
    ("bf16", "fp16", "torch.addmm", "bf16"),
    ("fp8_e4m3", "fp16", "torch._scaled_mm", "fp16"),
    ("fp8_e4m3", "bf16", "torch._scaled_mm", "bf16"),
    ("fp8_e4m3", "fp8_e4m3", "torch._scaled_mm", "fp8_e4m3"),  # cuBLASLt writes fp8 itself
    ("fp8_e4m3", "int8", "torch._scaled_mm", "fp16"),
    ("int8", "int8", "torch._int_mm", "int32"),  # then the requantisation, timed with it
    ("int8", "fp16", "torch._int_mm", "int32"),
])
def test_each_gemm_maps_to_the_pytorch_call_users_deploy(in_fmt, out_fmt, call, writes):
    assert pytorch.gemm_plan(in_fmt, out_fmt) == (call, writes)


def test_fp8_outputs_go_through_fp16_once_cublaslt_refuses_them():
    assert pytorch.gemm_plan("fp8_e4m3", "fp8_e4m3", fp8_out_direct=False) == ("torch._scaled_mm", "fp16")


def test_shapes_the_library_calls_refuse_are_infeasible_in_one_line():
    pytorch.check_shape(_gemm("fp16", k=100))  # cuBLAS takes any fp16 shape
    with pytest.raises(UnsupportedConfigError) as err:
        pytorch.check_shape(_gemm("fp8_e4m3", k=200))
    assert "multiples of 16" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UnsupportedConfigError, match="more than 16"):
        pytorch.check_shape(_gemm("int8", m=16))
    pytorch.check_shape(Op("convert", "fc", 16, 0, 100, "fp16", "int8"))


# --- a fake torch: enough of the module for the backend to be built without a GPU ----------------

class _Props:
    pci_domain_id, pci_bus_id, pci_device_id = 0, 0x19, 0


def _fake_torch(capability=(9, 0), available=True):
    cuda = types.SimpleNamespace(
        is_available=lambda: available, device_count=lambda: 1 if available else 0,
        get_device_name=lambda i=0: "FAKE NVIDIA H200", get_device_capability=lambda i=0: capability,
        current_device=lambda: 0, get_device_properties=lambda i: _Props(),
    )
    return types.SimpleNamespace(cuda=cuda, version=types.SimpleNamespace(cuda="13.0"), __version__="2.11.0+fake",
                                 int8="int8", empty=lambda *a, **k: object())


@pytest.fixture
def fake_gpu(monkeypatch):
    def install(**kwargs):
        monkeypatch.setitem(sys.modules, "torch", _fake_torch(**kwargs))
        monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: telemetry absent, said once
        # The operands module is re-imported against the fake torch here; afterwards it is put back
        # as it was (or removed), in sys.modules and as the package's attribute, so later tests
        # never get a module bound to the fake.
        import mpsearch.backends.gpu as gpu_package

        monkeypatch.setitem(sys.modules, "mpsearch.backends.gpu.tensors", sys.modules.get("mpsearch.backends.gpu.tensors"))
        monkeypatch.delitem(sys.modules, "mpsearch.backends.gpu.tensors")
        monkeypatch.setattr(gpu_package, "tensors", getattr(gpu_package, "tensors", None), raising=False)
        monkeypatch.delattr(gpu_package, "tensors")
        lines = []
        return lines
    return install


def test_provenance_names_the_library_regime_accumulation_and_missing_telemetry(fake_gpu):
    from mpsearch.backends.timing import TimingProtocol

    lines = fake_gpu()
    backend = pytorch.TorchBackend(protocol=TimingProtocol(regime="burst"), fp8_fast_accum=False, progress=lines.append)
    prov = backend.provenance()
    assert json.loads(json.dumps(prov)) == prov
    assert (prov["backend"], prov["source"], prov["device"], prov["arch"]) == ("torch", "measured", "FAKE NVIDIA H200", 90)
    assert prov["regime"] == "burst" and prov["timing"]["regime"] == "burst"
    assert prov["fp8_fast_accum"] is False and prov["torch"] == "2.11.0+fake"
    assert "nvidia-ml-py" in prov["telemetry"]["absent"]
    assert len(lines) == 1 and lines[0].startswith("warning: no GPU telemetry")
    assert backend.capabilities.formats == {"fp16", "bf16", "fp8_e4m3", "int8"}


def test_a_gpu_without_fp8_prices_no_fp8_and_int4_is_refused_at_prepare(fake_gpu):
    from mpsearch.network import preset

    fake_gpu(capability=(8, 0))
    backend = pytorch.TorchBackend(progress=lambda line: None)
    assert "fp8_e4m3" not in backend.capabilities.formats
    with pytest.raises(UnsupportedConfigError, match="_weight_int4pack_mm"):
        backend.prepare(preset("mlp6"), ("fp16", "int4"))
    with pytest.raises(UnsupportedConfigError, match="cannot run on FAKE NVIDIA H200"):
        backend.prepare(preset("mlp6"), ("fp16", "fp8_e4m3"))


def test_no_gpu_or_no_torch_is_said_in_one_line(fake_gpu, monkeypatch):
    fake_gpu(available=False)
    with pytest.raises(BackendUnavailableError) as err:
        pytorch.TorchBackend()
    assert "needs an NVIDIA GPU" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendUnavailableError, match="needs PyTorch with CUDA"):
        pytorch.TorchBackend()
