"""The CUTLASS backend's parts that need no GPU: the cuda-python shim, the tile catalog and its keys,
format/arch gating, the cache directory, the compile cache bookkeeping, the correctness check, and
the one-line refusal when the GPU or the gpu extra is missing."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from mpsearch.backends.cutlass import catalog
from mpsearch.backends.cutlass.cache import ENV_VAR, TuningStore, ensure_cache_dir, resolve_cache_dir
from mpsearch.errors import BackendUnavailableError, UnsupportedConfigError
from tests.conftest import REPO


def _has(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


needs_cutlass = pytest.mark.skipif(not (_has("cutlass_cppgen") and _has("cuda.bindings")),
                                   reason="needs the gpu extra (nvidia-cutlass, cuda-python)")


# --- tile keys and selection (pure) ---------------------------------------------------------------

def _td(shape, cluster, kernel, epilogue, scheduler):
    """A TileDescription's fields as CUTLASS prints them (enums print as Type.Name)."""
    return SimpleNamespace(threadblock_shape=list(shape), cluster_shape=[*cluster, 1],
                           kernel_schedule=f"KernelScheduleType.{kernel}",
                           epilogue_schedule=f"EpilogueScheduleType.{epilogue}",
                           tile_scheduler=f"TileSchedulerType.{scheduler}")


def test_an_sm80_tile_key_describes_shape_warps_and_stages():
    sm80 = SimpleNamespace(threadblock_shape=[128, 256, 128], warp_count=[2, 4, 1], stages=3)
    assert catalog.tile_key(sm80, 80) == "128x256x128 w2x4x1 s3"


def test_an_sm90_tile_key_names_every_design_choice_and_parses_back():
    tile = catalog.Sm90Tile(catalog.COOPERATIVE, (256, 128), (2, 1), catalog.DIRECT_EPILOGUE, stages=4, fast_accum=True)
    key = tile.key(128)
    assert key == "cooperative 256x128x128 c2x1 direct-epilogue 4-stage fast-accum"
    assert catalog.Sm90Tile.parse(key) == (tile, 128)
    plain = catalog.Sm90Tile(catalog.PINGPONG, (64, 128), (1, 2))
    assert plain.key(64) == "pingpong 64x128x64 c1x2 tma-epilogue"
    assert catalog.Sm90Tile.parse(plain.key(64)) == (plain, 64)
    with pytest.raises(ValueError):
        catalog.Sm90Tile.parse("256x128x64 c2x1 TmaWarpSpecializedCooperative TmaWarpSpecializedCooperative Default")


def test_designs_cutlass_cannot_build_are_never_offered():
    assert not catalog.Sm90Tile(catalog.COOPERATIVE, (64, 128), (1, 1)).valid()  # two warp groups need >= 128 rows
    assert not catalog.Sm90Tile(catalog.PINGPONG, (128, 256), (1, 1)).valid()  # accumulators exceed the registers
    for designs in (catalog.STAGE1, catalog.SWEEP):
        assert all(d.valid() for d in designs) and len(set(designs)) == len(designs)
    assert set(catalog.STAGE1) <= set(catalog.SWEEP)


def test_the_local_search_steps_one_choice_away_from_the_winner():
    winner = catalog.STAGE1[0]
    steps = catalog.neighbours(winner)
    assert len(steps) == catalog.LOCAL_SEARCH and winner not in steps
    for step in steps:
        assert step.valid()
        changed = [f for f in ("schedule", "cta", "cluster", "epilogue", "stages") if getattr(step, f) != getattr(winner, f)]
        assert len(changed) == 1
    assert steps[0].cluster == (winner.cluster[1], winner.cluster[0])  # the likeliest step first
    assert len(catalog.neighbours(winner, limit=2)) == 2


def test_fp8_candidates_accumulate_fast_unless_asked_not_to_and_other_formats_never_do():
    fast = catalog.candidate_specs(None, "fp8_e4m3", "fp16", 90)
    slow = catalog.candidate_specs(None, "fp8_e4m3", "fp16", 90, fast_accum=False)
    assert all(s.tile.endswith("fast-accum") for s in fast) and not any("fast-accum" in s.tile for s in slow)
    assert [s.tile.split()[1] for s in fast] == [f"{m}x{n}x128" for m, n in (d.cta for d in catalog.STAGE1)]
    assert not any("fast-accum" in s.tile for s in catalog.candidate_specs(None, "int8", "int8", 90))
    assert [s.tile.split()[1] for s in catalog.candidate_specs(None, "bf16", "bf16", 90)][0].endswith("x64")


SM80_KEYS = ["128x256x128 w2x4x1 s3", "256x128x128 w4x2x1 s3", "128x128x128 w2x2x1 s5", "64x64x128 w2x2x1 s6",
             "128x128x256 w2x2x1 s3", "64x128x128 w2x2x1 s6"]


def test_sm80_tile_selection_does_not_depend_on_the_registry_order():
    first = catalog.select_tiles(SM80_KEYS, "int4", 80)
    assert first[:2] == ["128x256x128 w2x4x1 s3", "256x128x128 w4x2x1 s3"] and "64x64x128 w2x2x1 s6" not in first
    for seed in range(5):
        shuffled = SM80_KEYS[:]
        random.Random(seed).shuffle(shuffled)
        assert catalog.select_tiles(shuffled, "int4", 80) == first
    assert catalog.select_tiles(SM80_KEYS, "int4", 80, limit=2) == first[:2]


def test_a_kernel_spec_key_names_formats_and_tile():
    spec = catalog.KernelSpec("int8", "fp8_e4m3", "cooperative 128x256x128 c1x2 tma-epilogue")
    assert spec.key == "int8->fp8_e4m3 cooperative 128x256x128 c1x2 tma-epilogue"


def test_sm90_tiles_are_also_tried_with_other_swizzles_and_raster_orders():
    assert catalog.schedules(80) == (None,)  # sm_80 kernels fix their swizzle when compiled
    sm90 = catalog.schedules(90)
    assert (1, 0) in sm90 and len(set(sm90)) == len(sm90) >= 4
    assert catalog.candidate_label("T", (4, 2)) == "T swizzle 4 raster along N"
    assert catalog.candidate_label("T", None) == "T"


# --- format and architecture gating ---------------------------------------------------------------

def test_int4_runs_the_sm80_kernels_on_hopper_and_is_emulated_there():
    assert catalog.kernel_cc("int4", 90) == 80
    assert catalog.is_emulated("int4", 90)
    assert catalog.kernel_cc("int4", 80) == 80 and not catalog.is_emulated("int4", 80)
    assert catalog.kernel_cc("fp8_e4m3", 90) == 90 and not catalog.is_emulated("fp8_e4m3", 90)


def test_fp8_is_refused_before_ada_with_a_one_line_reason():
    with pytest.raises(UnsupportedConfigError) as err:
        catalog.kernel_cc("fp8_e4m3", 80)
    assert "fp8_e4m3" in str(err.value) and "sm_80" in str(err.value) and "\n" not in str(err.value)


def test_only_int4_outputs_need_a_separate_conversion():
    assert catalog.fused_output("fp16", "int4") == "fp16"
    assert catalog.fused_output("int8", "int4") == "fp16"
    for out in ("fp16", "bf16", "fp8_e4m3", "int8"):
        assert catalog.fused_output("int8", out) == out


def test_a_format_without_kernels_is_refused():
    with pytest.raises(UnsupportedConfigError, match="no kernels for format 'fp32'"):
        catalog.check_pair("fp32", "fp16", 90)


# --- the cache directory --------------------------------------------------------------------------

def test_cache_dir_precedence_is_argument_then_env_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir(tmp_path / "arg") == (tmp_path / "arg").resolve()
    assert resolve_cache_dir() == (tmp_path / "env").resolve()
    monkeypatch.delenv(ENV_VAR)
    assert resolve_cache_dir() == (tmp_path / "xdg" / "mpsearch" / "cutlass").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_cache_dir() == (tmp_path / "home" / ".cache" / "mpsearch" / "cutlass").resolve()


def test_the_default_cache_dir_is_never_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_cache_dir() != tmp_path.resolve()
    assert resolve_cache_dir().name == "cutlass"


def test_an_unwritable_cache_dir_is_a_one_line_error_naming_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BackendUnavailableError) as err:
        ensure_cache_dir(blocker / "cache")
    message = str(err.value)
    assert "--cache-dir" in message and ENV_VAR in message and "\n" not in message


def test_tile_choices_are_stored_per_device(tmp_path):
    h100 = TuningStore(tmp_path, "H100")
    h100.put("gemm 1x2x3 fp16->fp16", {"tile": "a"})
    assert TuningStore(tmp_path, "H100").get("gemm 1x2x3 fp16->fp16") == {"tile": "a"}
    assert TuningStore(tmp_path, "H200").get("gemm 1x2x3 fp16->fp16") is None


# --- the compile cache bookkeeping ------------------------------------------------------------------

class _FakeOp:
    """Stands in for a GemmOperationUniversal: what the cache key is made of."""

    def __init__(self, source: str):
        self.rt_module = SimpleNamespace(emit=lambda: source)
        self._name = "kernel_" + source

    def procedural_name(self):
        return self._name


def _store(cache_dir: Path, key: str) -> None:
    """Put a kernel row into a cache laid out as cutlass_cppgen's ArtifactManager lays it out."""
    from mpsearch.backends.cutlass.shim import CACHE_DB

    with sqlite3.connect(cache_dir / CACHE_DB) as conn:
        conn.execute("CREATE TABLE compiled_operations(op_key TEXT NOT NULL UNIQUE, cubin BLOB NOT NULL, "
                     "hostbin BLOB NOT NULL, op_name TEXT NOT NULL, op_attrs TEXT NOT NULL)")
        conn.execute("INSERT INTO compiled_operations VALUES (?, ?, ?, ?, ?)", (key, b"", b"", "k", "[0]"))


def test_a_warm_cache_compiles_nothing_and_a_rejected_kernel_is_not_retried(tmp_path, monkeypatch):
    from mpsearch.backends.cutlass import compile as comp

    def no_nvcc(*args, **kwargs):
        raise AssertionError("nvcc must not run for a cached or known-bad kernel")

    monkeypatch.setattr(comp, "_compile_one", no_nvcc)
    cached, rejected = _FakeOp("cached"), _FakeOp("rejected")
    _store(tmp_path, comp.cache_key(cached))
    (tmp_path / comp.FAILED_FILE).write_text(json.dumps({comp.short_key(comp.cache_key(rejected)): "static assertion"}))
    report = comp.compile_operations(None, {"a": cached, "b": rejected}, tmp_path, arch=90, progress=lambda line: None)
    assert (report.compiled, report.cached) == (0, 1)
    assert report.failed == {"b": "static assertion"}


def test_a_cold_cache_compiles_in_parallel_and_reports_progress(tmp_path, monkeypatch):
    from mpsearch.backends.cutlass import compile as comp

    seen = []
    monkeypatch.setattr(comp, "_sources", lambda op: ("device", "host"))
    monkeypatch.setattr(comp, "_flags", lambda cutlass, arch: [])
    monkeypatch.setattr(comp, "_compile_one", lambda build, d, h, flags, device_only: seen.append(build) or (b"cubin", None))
    ops = {f"k{i}": _FakeOp(f"src{i}") for i in range(3)}
    lines = []
    report = comp.compile_operations(None, ops, tmp_path, arch=90, jobs=2, device_only=True, progress=lines.append)
    assert report.compiled == 3 and len(seen) == 3
    assert lines[0].startswith("compiling 3 CUTLASS kernels on 2 processes")
    assert any("compiled 3/3" in line for line in lines)


# --- the shim and the catalog over CUTLASS's registry (needs the gpu extra, no GPU) ---------------------

@needs_cutlass
@pytest.mark.slow
def test_importing_cutlass_writes_nothing_in_the_current_directory(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    code = textwrap.dedent(f"""
        import sys
        sys.argv += ["-m", "gpu"]  # pytest -m gpu once kept cutlass from importing its kernel generator
        from mpsearch.backends.cutlass.shim import import_cutlass
        cutlass = import_cutlass({str(tmp_path / 'cache')!r}, device_cc=90)
        import cuda, cuda.cuda, cuda.bindings.driver
        assert cuda.cuda is cuda.bindings.driver and cuda.__version__
        compiler = sys.modules["cutlass_cppgen.backend.compiler"]
        print(compiler.CACHE_FILE, compiler.CDLLBin.__module__, len(cutlass.op.Gemm(
            element=cutlass.DataType.f16, layout=cutlass.LayoutType.RowMajor, element_accumulator=cutlass.DataType.f32,
            cc=90).tile_descriptions()))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    cache_file, loader_module, tiles = out.stdout.split()
    assert cache_file == str((tmp_path / "cache" / "compiled_cache.release.db").resolve())
    assert loader_module == "mpsearch.backends.cutlass.shim"
    assert int(tiles) > 8
    assert list(work.iterdir()) == []
    assert (tmp_path / "cache" / "compiled_cache.db").exists()  # cutlass_cppgen creates its default file at import


@pytest.fixture(scope="module")
def cutlass_sm90(tmp_path_factory):
    if not (_has("cutlass_cppgen") and _has("cuda.bindings")):
        pytest.skip("needs the gpu extra (nvidia-cutlass, cuda-python)")
    from mpsearch.backends.cutlass.shim import _cache_dir, import_cutlass

    return import_cutlass(_cache_dir or tmp_path_factory.mktemp("cutlass"), device_cc=90)


@pytest.mark.slow  # CUTLASS's option registry for sm_90 takes 10-20 s to build (once per module)
@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp8_e4m3", "int8"])
def test_a_designed_hopper_kernel_gets_the_cta_tile_cluster_and_schedules_asked_for(cutlass_sm90, fmt):
    specs = catalog.candidate_specs(cutlass_sm90, fmt, "fp16", 90, designs=catalog.SWEEP)
    assert len(specs) == len(catalog.SWEEP)
    names = set()
    for spec in specs:
        op = catalog.build_operation(cutlass_sm90, spec, 90)
        tile, depth = catalog.Sm90Tile.parse(spec.tile)
        td = op.tile_description
        assert td.blackwell_threadblock_shape == [*tile.cta, depth]  # what the emitted kernel's CTA computes
        assert list(td.cluster_shape[:2]) == list(tile.cluster) and td.stages == tile.stages
        name = op.procedural_name()
        assert ("cooperative" in name) == (tile.schedule == catalog.COOPERATIVE)
        assert ("fastaccum" in name) == tile.fast_accum
        assert ("epi_nosmem" in name) == (tile.epilogue == catalog.DIRECT_EPILOGUE)
        names.add(name)
    assert len(names) == len(specs)  # every design is a distinct kernel


@pytest.mark.slow  # CUTLASS's option registry for sm_90 takes 10-20 s to build (once per module)
def test_int4_candidates_are_sm80_tiles(cutlass_sm90):
    tiles = [s.tile for s in catalog.candidate_specs(cutlass_sm90, "int4", "fp16", 90, limit=4)]
    assert len(tiles) == 4 and all(" w" in t and " s" in t for t in tiles)


@pytest.mark.slow  # CUTLASS's option registry for sm_90 takes 10-20 s to build (once per module)
def test_a_built_kernel_scales_in_fp32_and_writes_the_output_format(cutlass_sm90):
    from mpsearch.backends.cutlass.compile import _sources, cache_key

    spec = catalog.candidate_specs(cutlass_sm90, "int8", "int8", 90)[0]
    op = catalog.build_operation(cutlass_sm90, spec, 90)
    assert op.epilogue_functor.element_output == cutlass_sm90.DataType.s8
    assert op.epilogue_functor.element_epilogue == cutlass_sm90.DataType.f32  # an int8 scale needs a float alpha
    assert op.C.element == cutlass_sm90.DataType.void
    device, host = _sources(op)
    assert op.rt_module.name() in device and op.rt_module.name() + "_get_param_size" in host
    again = catalog.build_operation(cutlass_sm90, spec, 90)
    assert cache_key(again) == cache_key(op)  # the same spec finds the same cached kernel
    other = catalog.build_operation(cutlass_sm90, catalog.KernelSpec("int8", "fp16", spec.tile), 90)
    assert cache_key(other) != cache_key(op)


@pytest.mark.slow  # CUTLASS's option registry for sm_90 takes 10-20 s to build (once per module)
def test_a_schedule_reaches_the_scheduler_arguments_only_while_arguments_are_built(cutlass_sm90):
    pytest.importorskip("torch")
    import cutlass_cppgen.backend.gemm_operation as gemm_operation

    from mpsearch.backends.cutlass import runtime

    original = gemm_operation.get_tile_scheduler_arguments_3x
    with runtime._scheduler_arguments((8, 2)):
        args = gemm_operation.get_tile_scheduler_arguments_3x(cutlass_sm90.TileSchedulerType.Default)
        assert (args.max_swizzle_size, args.raster_order_option) == (8, 2)
    assert gemm_operation.get_tile_scheduler_arguments_3x is original
    assert original(cutlass_sm90.TileSchedulerType.Default).max_swizzle_size == 1


@pytest.mark.slow  # CUTLASS's option registry for sm_90 takes 10-20 s to build (once per module)
def test_an_unknown_tile_is_refused(cutlass_sm90):
    with pytest.raises(UnsupportedConfigError, match="no tile"):
        catalog.build_operation(cutlass_sm90, catalog.KernelSpec("fp16", "fp16", "1x1x1 c1x1 X Y Default"), 90)


# --- the correctness check and the conversions (torch on the CPU) -------------------------------------

def test_an_output_written_through_fp16_is_checked_against_the_same_double_rounding():
    """An int4 output is written in fp16 and converted: values fp16 rounds onto a tie (2.5004 -> 2.5)
    then round to even (2), where a direct rounding gives 3. An int4 GEMM with k = 32768 (mlp6's
    fc1) hits such values in 0.11 % of its outputs, as measured on an H200: against a direct
    rounding every correct kernel failed; against the path's own rounding it is exact."""
    torch = pytest.importorskip("torch")
    from mpsearch.backends.gpu import tensors as runtime

    tie = torch.tensor([[2.5004, -3.4996, 1.2]], dtype=torch.float64)
    assert runtime.reference_output(tie, "int4", via="fp16").tolist() == [[2.0, -4.0, 1.0]]
    assert runtime.reference_output(tie, "int4").tolist() == [[3.0, -3.0, 1.0]]
    gen = torch.Generator().manual_seed(0)
    k = 32768
    a, w = (torch.round((torch.randn(256, k, generator=gen, dtype=torch.float64) * 2).clamp(-8, 7)) for _ in range(2))
    exact = runtime.gemm_alpha("int4", "int4", k) * (a @ w.T)
    written = runtime.round_into(runtime.round_into(exact, "fp16"), "int4")  # what the kernel pair stores
    assert not runtime.check_output(written, "int4", runtime.reference_output(exact, "int4"), "int4")[0]
    assert runtime.check_output(written, "int4", runtime.reference_output(exact, "int4", via="fp16"), "int4")[0]


def test_the_check_rejects_wrong_outputs_and_accepts_rounding(monkeypatch):
    torch = pytest.importorskip("torch")
    from mpsearch.backends.gpu import tensors as runtime

    expected = torch.round(torch.randn(64, 64, dtype=torch.float64) * 32).clamp(-128, 127)
    assert runtime.check_output(expected.clone(), "int8", expected, "int8")[0]
    flip = expected.clone()
    flip[0, 0] += 1  # one tie flipped by the fp32 scale: 1 of 4096 elements
    assert runtime.check_output(flip, "int8", expected, "int8")[0]
    wrong = expected.clone()
    wrong[0, 0] += 2
    ok, _, reason = runtime.check_output(wrong, "int8", expected, "int8")
    assert not ok and "not exact" in reason
    nan = expected.clone()
    nan[1, 1] = float("nan")
    assert not runtime.check_output(nan, "int8", expected, "int8")[0]
    ref = runtime.round_into(torch.randn(64, 64, dtype=torch.float64), "fp8_e4m3")
    noisy = ref * (1 + 2e-2 * torch.randn_like(ref))
    assert runtime.check_output(noisy, "fp8_e4m3", ref, "fp8_e4m3")[0]  # within fp8's 5e-2
    assert not runtime.check_output(noisy, "fp16", ref, "fp16")[0]  # far beyond fp16's 1e-3


def test_the_output_step_is_the_spacing_of_the_format():
    torch = pytest.importorskip("torch")
    from mpsearch.backends.gpu import tensors as runtime

    x = torch.tensor([1.0, 1.5, 448.0, 3.0], dtype=torch.float64)
    assert runtime.output_step(x, "fp8_e4m3").tolist() == [0.125, 0.125, 32.0, 0.25]
    assert runtime.output_step(x, "fp16").tolist() == [2 ** -10, 2 ** -10, 0.25, 2 ** -9]
    assert runtime.output_step(x, "int8").tolist() == [1.0] * 4


def test_int4_packs_low_nibble_first_and_round_trips():
    torch = pytest.importorskip("torch")
    from mpsearch.backends.gpu import convert
    from mpsearch.backends.gpu import tensors as runtime

    x = torch.tensor([[1.0, -2.0, 7.4, -9.0]], dtype=torch.float16)
    packed = convert.reference_convert(x, "int4", 1.0)
    assert packed.dtype == torch.uint8 and packed.tolist() == [[0xE1, 0x87]]  # 1 | -2<<4 ; 7 | -8<<4 (saturated)
    assert runtime.to_float64(packed, "int4").tolist() == [[1.0, -2.0, 7.0, -8.0]]


def test_the_gemm_scale_gives_the_output_format_its_typical_magnitude():
    pytest.importorskip("torch")
    from mpsearch.backends.gpu import tensors as runtime

    # int8 operands (std 32), K = 1024: A·W has std 32*32*32 = 32768; an fp16 output wants std 1.
    assert runtime.gemm_alpha("int8", "fp16", 1024) == pytest.approx(1 / 32768)
    assert runtime.gemm_alpha("fp16", "int8", 4096) == pytest.approx(32 / 64)


# --- refusing to start without a GPU or the gpu extra ---------------------------------------------------

def test_missing_packages_are_named_in_one_line(monkeypatch):
    import importlib.util

    from mpsearch.backends.cutlass import backend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("cutlass_cppgen", "cuda.bindings") else real(name, *a))
    with pytest.raises(BackendUnavailableError) as err:
        backend.CutlassBackend(cache_dir="unused")
    message = str(err.value)
    assert "nvidia-cutlass 4.2" in message and "cuda-python" in message and "mpsearch[gpu]" in message
    assert "\n" not in message


def test_no_gpu_is_said_in_one_line(monkeypatch):
    torch = pytest.importorskip("torch")
    from mpsearch.backends.cutlass import backend

    monkeypatch.setattr(backend, "missing_dependencies", lambda: [])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailableError) as err:
        backend.CutlassBackend(cache_dir="unused")
    assert "needs an NVIDIA GPU" in str(err.value) and "\n" not in str(err.value)


# --- mpsearch bench ----------------------------------------------------------------------------------

def test_bench_reads_a_per_layer_config_file_with_a_default(tmp_path):
    from mpsearch.cli.bench import load_config_file

    path = tmp_path / "c.toml"
    path.write_text('default = "fp16"\nfc2 = "fp8"\n')
    assert load_config_file(path, ("fc1", "fc2", "fc3")) == ["fp16", "fp8", "fp16"]
    path.write_text('[formats]\nfc1 = "int8"\nfc2 = "int8"\n')
    with pytest.raises(Exception, match="layer 'fc3' has no format"):
        load_config_file(path, ("fc1", "fc2", "fc3"))
    path.write_text('fc9 = "int8"\n')
    with pytest.raises(Exception, match="unknown layer 'fc9'"):
        load_config_file(path, ("fc1",))


def test_bench_prints_each_layer_and_the_end_to_end_latency(cli):
    out = cli("bench", "mlp6", "--config", "fp8,fp8,fp16,int8,int8,fp8", "--backend", "roofline")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sum(line.startswith("fc") for line in lines) == 6
    assert "gemm fp8_e4m3->fp8_e4m3" in out.stdout and "gemm int8->fp8_e4m3" in out.stdout
    assert any("end to end" in line and "modelled for" in line for line in lines)


def test_bench_with_cutlass_and_no_gpu_fails_in_one_line(cli):
    if Path("/dev/nvidia0").exists():
        pytest.skip("this machine has a GPU")
    out = cli("bench", "mlp6", "--config", "fp16,fp16,fp16,fp16,fp16,fp16", "--backend", "cutlass")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "cutlass" in out.stderr


def test_misaligned_shapes_are_refused_before_any_kernel_runs():
    from mpsearch.backends.cutlass.catalog import check_alignment
    from mpsearch.errors import UnsupportedConfigError
    from mpsearch.network import Op

    check_alignment(Op("gemm", "ok", 16, 64, 64, "int8", "fp16"))  # 16-byte multiples: runs
    with pytest.raises(UnsupportedConfigError, match="k=72 is not a multiple of 32"):
        check_alignment(Op("gemm", "fc1", 16, 64, 72, "int4", "fp16"))
    with pytest.raises(UnsupportedConfigError, match=r"layer fc2 \(int8 in, fp16 out\) has k=40, n=64; .*k a multiple of 16"):
        check_alignment(Op("gemm", "fc2", 16, 64, 40, "int8", "fp16"))
    with pytest.raises(UnsupportedConfigError, match="n a multiple of 16"):
        check_alignment(Op("gemm", "fc3", 16, 24, 64, "fp16", "int8"))
    check_alignment(Op("convert", "q", 16, 0, 7, "fp16", "int8"))  # conversions have no such rule


def test_the_local_search_size_comes_from_the_environment_and_a_bad_value_is_one_line(monkeypatch):
    from mpsearch.backends.cutlass import backend

    monkeypatch.delenv(backend.LOCAL_SEARCH_ENV, raising=False)
    assert backend._env_int(backend.LOCAL_SEARCH_ENV, 4) == 4
    monkeypatch.setenv(backend.LOCAL_SEARCH_ENV, "0")
    assert backend._env_int(backend.LOCAL_SEARCH_ENV, 4) == 0
    monkeypatch.setenv(backend.LOCAL_SEARCH_ENV, "some")
    with pytest.raises(BackendUnavailableError) as err:
        backend._env_int(backend.LOCAL_SEARCH_ENV, 4)
    assert "MPSEARCH_LOCAL_SEARCH must be a whole number" in str(err.value) and "\n" not in str(err.value)


def test_heavy_shapes_are_the_fewest_largest_layers_carrying_the_share():
    from mpsearch.backends.cutlass.backend import heavy_shapes
    from mpsearch.network import preset

    mlp6 = preset("mlp6")
    assert heavy_shapes(mlp6, 0.7) == {(2048, 16384, 32768)}  # fc1 alone is 72% of the multiply-adds
    assert heavy_shapes(mlp6, 0.8) == {(2048, 16384, 32768), (2048, 8192, 16384)}


def test_only_stage1_winners_get_their_neighbours_compiled_so_a_warm_run_compiles_nothing():
    from mpsearch.backends.cutlass.backend import local_search_kernels

    def neighbours(record):
        return [f"{record['tile']}+{step}" for step in ("stages", "cluster")]

    fresh = {"tile": "A", "stage": 1}
    warm = {"tile": "A+stages", "stage": 2}  # stage 2 already ran and kept a neighbour
    assert local_search_kernels([fresh], neighbours) == ["A+stages", "A+cluster"]
    assert local_search_kernels([warm], neighbours) == []
    assert local_search_kernels([fresh, dict(fresh)], neighbours) == ["A+stages", "A+cluster"]
