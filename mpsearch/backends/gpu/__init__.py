"""What the GPU backends share: operands in each format, the float64 check, conversion kernels, the CUDA timer.

Nothing here is imported until a GPU backend is constructed (torch, Triton)."""
