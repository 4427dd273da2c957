"""The CUTLASS latency backend: measured on this machine's GPU with tuned, checked kernels.

How a configuration is measured (``CutlassBackend.measure``):

1. ``Network.ops(formats)`` lists the GEMMs and conversions. Each GEMM ``(m, n, k, in, out)`` runs a
   CUTLASS kernel reading ``in`` operands (A row-major activations, W column-major weights) and
   writing ``out`` from its epilogue: ``D = saturate(alpha * A·W^T)`` with an fp32 scale ``alpha``
   (fp16/bf16/fp8 e4m3 accumulate in fp32, int8/int4 in int32). int4 runs the sm_80 kernels
   (emulated on Hopper, reported so); int4 outputs and the fp16→format conversions of unchained
   networks are a separate single-pass Triton kernel, included in the timing.
2. Tuning, once per GEMM shape and format pair and device (stored in ``tuning.json``): every
   candidate tile (``catalog``; 8 per format on sm_90, 4 for int4's sm_80 kernels) is compiled (in
   parallel, cached); on sm_90 each is also tried with several tile-scheduler swizzles and raster
   orders (launch arguments). Each candidate is checked against a float64 reference (one that fails
   is never timed) and timed; the fastest wins and is stored with every candidate's timings.
3. The network runs end to end, every kernel back to back on one stream, timed with CUDA events
   after a warm-up, with the L2 flushed before each repeat; all samples are kept.

Importing this package is light: CUDA, torch and cutlass_cppgen load when a backend is constructed.
"""

from mpsearch.backends.cutlass.backend import CutlassBackend, missing_dependencies

__all__ = ["CutlassBackend", "missing_dependencies"]
