"""Compile CUTLASS kernels in parallel into cutlass_cppgen's own cache, and say how it goes.

cutlass_cppgen compiles one kernel at a time, in-process, and needs a CUDA context to do it. Here we
emit the same device and host sources it would (same includes, same templates, same cache key), run
nvcc for many kernels at once in a thread pool (the threads only wait on nvcc processes), and write
the results into its SQLite cache. ``compiler.add_module`` then finds every kernel there and
compiles nothing. Kernels that fail to compile are remembered too (``failed.json``), so a warm
rerun does not try them again.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mpsearch.backends.cutlass.shim import CACHE_DB

FAILED_FILE = "failed.json"
# Preprocessor definitions of every kernel build (see _flags); a change here needs a new CACHE_DB name.
BUILD_DEFINES = ("-DNDEBUG",)
_BACKEND = "nvcc"  # cutlass_cppgen's default compiler backend; part of its cache key


def cache_key(operation: Any) -> str:
    """The key cutlass_cppgen's ``ArtifactManager.add_module`` looks a kernel up by."""
    return operation.rt_module.emit() + operation.procedural_name() + _BACKEND


def short_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _connect(cache_dir: Path) -> sqlite3.Connection:
    """cutlass_cppgen's kernel table (created here too: it creates it only in the file it finds at import)."""
    conn = sqlite3.connect(Path(cache_dir) / CACHE_DB, timeout=60)
    conn.execute("CREATE TABLE IF NOT EXISTS compiled_operations(op_key TEXT NOT NULL UNIQUE, cubin BLOB NOT NULL, "
                 "hostbin BLOB NOT NULL, op_name TEXT NOT NULL, op_attrs TEXT NOT NULL)")
    return conn


def cached_keys(cache_dir: Path) -> set[str]:
    if not (Path(cache_dir) / CACHE_DB).exists():
        return set()
    with contextlib.closing(_connect(cache_dir)) as conn:
        return {row[0] for row in conn.execute("SELECT op_key FROM compiled_operations")}


def load_failures(cache_dir: Path) -> dict[str, str]:
    path = Path(cache_dir) / FAILED_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _save_failures(cache_dir: Path, failures: dict[str, str]) -> None:
    path = Path(cache_dir) / FAILED_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(failures, indent=1, sort_keys=True))
    os.replace(tmp, path)


@dataclass
class CompileReport:
    total: int
    compiled: int
    cached: int
    failed: dict[str, str]  # name -> first lines of nvcc's error
    seconds: float


def _sources(operation: Any) -> tuple[str, str]:
    """Device and host sources exactly as ``ArtifactManager.emit_compile_`` writes them."""
    from cutlass_library import SubstituteTemplate

    rt = operation.rt_module
    include = '#include "${include}"\n'
    includes = list(dict.fromkeys(rt.emitter.includes))
    host_includes = ["builtin_types.h", "device_launch_parameters.h", "cstddef"] + includes
    device = "".join(SubstituteTemplate(include, {"include": i}) for i in includes)
    host = "".join(SubstituteTemplate(include, {"include": i}) for i in host_includes)
    values = {"operation_name": rt.name(), "operation_suffix": rt.emitter.operation_suffix}
    body = rt.emit()
    device += body + SubstituteTemplate(rt.KernelTemplate, values)
    host += body + SubstituteTemplate(rt.HostTemplate, values)
    return device, host


def _flags(cutlass_cppgen: Any, arch: int) -> list[str]:
    from cutlass_cppgen import CUTLASS_PATH, cuda_install_path

    cuda = cuda_install_path()
    includes = [f"{cuda}/include", f"{CUTLASS_PATH}/include", f"{CUTLASS_PATH}/tools/util/include",
                f"{CUTLASS_PATH}/python/cutlass/cpp/include"]
    # cutlass_cppgen's nvcc flags, plus NDEBUG: without it CUTLASS's device-side asserts stay in, and
    # on sm_90 the call they make splits the wgmma pipeline (ptxas warns "wgmma.mma_async
    # instructions are serialized"), which costs the mainloop its overlap. One explicit target
    # (sm_90 needs the 'a' variant for wgmma/TMA) instead of -arch, which also builds generic PTX.
    flags = ["-std=c++17", "--expt-relaxed-constexpr", "-Xcudafe", "--diag_suppress=esa_on_defaulted_function_ignored",
             *BUILD_DEFINES]
    flags += [f"--include-path={p}" for p in includes]
    target = f"{arch}{'a' if arch >= 90 else ''}"
    flags.append(f"-gencode=arch=compute_{target},code=sm_{target}")
    return flags


def _nvcc() -> str:
    from cutlass_cppgen import cuda_install_path

    return f"{cuda_install_path()}/bin/nvcc"


def _compile_one(build: Path, device_src: str, host_src: str, flags: list[str], device_only: bool) -> tuple[bytes, Path | None]:
    build.mkdir(parents=True, exist_ok=True)
    (build / "device.cu").write_text(device_src)
    cubin = build / "kernel.cubin"
    _run([_nvcc(), *flags, "-cubin", str(build / "device.cu"), "-o", str(cubin)])
    if device_only:
        return cubin.read_bytes(), None
    (build / "host.cu").write_text(host_src)
    host_so = build / "host.so"
    # The host stub only computes parameter blocks and grid shapes (CUDA runtime calls, no driver
    # calls), so it links libcudart alone and builds on a machine without a GPU driver; stripped, it
    # is a third smaller in the cache.
    _run([_nvcc(), "-x", "cu", "-Xcompiler=-fpermissive", "-Xcompiler=-w", "-Xcompiler=-fPIC", *flags,
          "-shared", "-Xlinker=--strip-all", "-o", str(host_so), str(build / "host.cu"), "-lcudart"])
    return cubin.read_bytes(), host_so


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [l for l in (proc.stderr + proc.stdout).splitlines() if "error" in l.lower()]
        raise RuntimeError(" | ".join(lines[:3]) or (proc.stderr + proc.stdout)[-400:])


def _insert(cache_dir: Path, key: str, operation: Any, cubin: bytes, host_so: Path) -> None:
    """Store a compiled kernel the way ``ArtifactManager.add_module`` does (loading the host stub
    needs libcudart, not a GPU: a cache can be built on a CPU machine with the CUDA toolkit)."""
    rt = operation.rt_module
    lib = ctypes.CDLL(str(host_so))
    param_size = getattr(lib, rt.name() + "_get_param_size")()
    attrs: list[Any] = [param_size]
    attrs += list(getattr(rt, "extra_funcs", {}) or {})
    with contextlib.closing(_connect(cache_dir)) as conn, conn:
        conn.execute("INSERT OR IGNORE INTO compiled_operations (op_key, cubin, hostbin, op_name, op_attrs) VALUES (?, ?, ?, ?, ?)",
                     (key, cubin, host_so.read_bytes(), rt.name(), json.dumps(attrs)))


def compile_operations(
    cutlass_cppgen: Any,
    operations: dict[str, Any],
    cache_dir: Path,
    *,
    arch: int,
    jobs: int | None = None,
    device_only: bool = False,
    progress: Callable[[str], None] | None = None,
) -> CompileReport:
    """Compile every operation (name -> GemmOperationUniversal) not yet in the cache.

    ``device_only`` builds the device code alone (a machine with nvcc but no GPU: checks that the
    kernels compile; nothing is stored). Progress lines go to ``progress`` (default: stderr).
    """
    cache_dir = Path(cache_dir)
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    start = time.monotonic()
    have = cached_keys(cache_dir)
    failures = load_failures(cache_dir)
    todo = {}
    cached = 0
    failed: dict[str, str] = {}
    for name, op in operations.items():
        key = cache_key(op)
        if key in have:
            cached += 1
        elif short_key(key) in failures:
            failed[name] = failures[short_key(key)]
        else:
            todo[name] = (key, op)
    total = len(todo)
    if not total:
        return CompileReport(len(operations), 0, cached, failed, time.monotonic() - start)
    jobs = jobs or os.cpu_count() or 1
    say(f"compiling {total} CUTLASS kernels on {jobs} processes ({cached} cached); ~1 min of one core each")
    flags = {cc: _flags(cutlass_cppgen, cc) for cc in {arch}}
    build_root = cache_dir / "build"
    done = 0
    compiled = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {}
        for name, (key, op) in todo.items():
            device_src, host_src = _sources(op)
            build = build_root / short_key(key)
            futures[pool.submit(_compile_one, build, device_src, host_src, flags[arch], device_only)] = (name, key, op, build)
        for future in as_completed(futures):
            name, key, op, build = futures[future]
            done += 1
            try:
                cubin, host_so = future.result()
                if host_so is not None:
                    _insert(cache_dir, key, op, cubin, host_so)
                compiled += 1
                status = "ok"
            except Exception as err:  # nvcc's verdict on one kernel; the others go on
                failed[name] = str(err)[:500]
                failures[short_key(key)] = failed[name]
                status = "FAILED"
            finally:
                if not device_only:
                    shutil.rmtree(build, ignore_errors=True)
            say(f"  compiled {done}/{total} ({time.monotonic() - start:.0f} s): {name} {status}")
    if not device_only:
        _save_failures(cache_dir, failures)
        shutil.rmtree(build_root, ignore_errors=True)
    return CompileReport(len(operations), compiled, cached, failed, time.monotonic() - start)
