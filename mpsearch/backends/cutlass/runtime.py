"""Compiled CUTLASS GEMMs and their launch arguments (the tile scheduler's swizzle and raster order).

Imported only by a constructed :class:`~mpsearch.backends.cutlass.CutlassBackend` (it imports torch).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch


class CompiledGemm:
    """One compiled CUTLASS GEMM operation and cached launch arguments per set of buffers."""

    def __init__(self, operation: Any, in_fmt: str, out_fmt: str):
        self.operation = operation
        self.in_fmt = in_fmt
        self.out_fmt = out_fmt
        self._args: dict[tuple, Any] = {}

    def launcher(self, a: torch.Tensor, w: torch.Tensor, d: torch.Tensor, m: int, n: int, k: int, alpha: float,
                 schedule: tuple[int, int] | None = None) -> Callable[[], None]:
        """A no-argument launch of this kernel on these buffers; ``schedule`` = (swizzle, raster
        order) of the sm_90 persistent tile scheduler (None: cutlass_cppgen's 1, heuristic)."""
        from cutlass_cppgen.backend.gemm_operation import GemmArguments
        from cutlass_cppgen.shape import GemmCoord
        from cutlass_library import GemmUniversalMode

        is_3x = self.operation.api.name == "v3x"
        schedule = tuple(schedule) if (schedule is not None and is_3x) else None
        key = (a.data_ptr(), w.data_ptr(), d.data_ptr(), m, n, k, alpha, schedule)
        args = self._args.get(key)
        if args is None:
            with _scheduler_arguments(schedule):
                args = GemmArguments(
                    operation=self.operation, problem_size=GemmCoord(m, n, k),
                    A=a, B=w, C=None if is_3x else d, D=d,
                    output_op=self.operation.epilogue_type(alpha, 0.0),
                    gemm_mode=GemmUniversalMode.Gemm, split_k_slices=1,
                )
            self._args[key] = args
        run = self.operation.run
        return lambda: run(args)


@contextlib.contextmanager
def _scheduler_arguments(schedule: tuple[int, int] | None):
    """While arguments are built, give the persistent tile scheduler ``schedule`` = (max swizzle
    size, raster order). cutlass_cppgen hard-codes (1, heuristic) in the function swapped here; the
    values end up in the kernel's parameter block, built once per set of arguments."""
    if schedule is None:
        yield
        return
    import cutlass_cppgen.backend.gemm_operation as gemm_operation
    from cutlass_cppgen.backend.c_types import _PersistentTileSchedulerArguments

    original = gemm_operation.get_tile_scheduler_arguments_3x
    gemm_operation.get_tile_scheduler_arguments_3x = lambda tile_scheduler, splits=1: _PersistentTileSchedulerArguments(*schedule)
    try:
        yield
    finally:
        gemm_operation.get_tile_scheduler_arguments_3x = original
