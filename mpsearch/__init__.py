"""mpsearch: find the latency-vs-quality Pareto frontier of per-layer number formats.

Importing this package is cheap and GPU-free: the CUTLASS backend imports CUDA modules only when it
is constructed, and plots import matplotlib/plotly only when rendered.
"""

__version__ = "0.1.0"
