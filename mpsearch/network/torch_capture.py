"""Networks from a PyTorch module: the GEMMs one forward pass on example inputs runs.

What is captured, in execution order:

- every ``nn.Linear`` call (also subclasses that compute their output their own way, e.g.
  fake-quantized ones): ``k = in_features``, ``n = out_features``, ``m`` = the input's elements / k
  (the product of its leading dimensions: batch × tokens);
- every ``F.linear``, ``torch.matmul``/``mm``/``addmm`` or ``@`` of which one operand is a
  2-D parameter of the module (a weight held outside an ``nn.Linear``, like GPT-2's ``Conv1D``).
  ``x @ W`` reads W as ``(k, n)``, ``W @ x`` and ``F.linear(x, W)`` as ``(n, k)``.

Products of two activations (attention's ``Q·Kᵀ`` and ``P·V``) have no weight to quantize and are
left out, as are convolutions and ``einsum``.

Layers are named after the module (``layers.0.self_attn.q_proj``) or the parameter (without its
``.weight``), as in the module's ``state_dict``, so the ``sqnr`` objective finds their weights in a
checkpoint by name. A module or parameter that runs twice gives ``name@1``, ``name@2`` for the later calls.

Ties (one format for the group): layers that read the same input tensor (fused QKV, gate/up) — they
share its conversion — and calls of one weight (it is stored once, in one format). A group is named
after its members (``layers.0.mlp.gate_proj+up_proj``).

Chained (see :class:`~mpsearch.network.Network`): when every layer reads the previous layer's output
through elementwise operations only (activations, dropout, a bias or scale held by the module,
reshapes), as in an MLP; otherwise (norms, attention, residual adds in between) unchained.

The module runs once under ``torch.no_grad()`` in eval mode (its training flags are restored after),
on whatever device its parameters and the inputs are on (``meta`` works: no weights are read).
"""

from __future__ import annotations

from typing import Any, Mapping

from mpsearch.errors import InvalidSpecError
from mpsearch.network.layer import Layer, tie_name

# Operations through which a GEMM's output still counts as that GEMM's output for chaining: they
# can run in the GEMM's epilogue. Matched by function name (torch.relu, F.relu and Tensor.relu alike).
_ELEMENTWISE = {
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "dropout",
    "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu", "hardtanh", "hardtanh_", "mish", "softplus",
    "hardswish", "hardsigmoid", "threshold", "clamp", "clamp_", "clip", "neg", "abs", "square", "to",
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "__add__", "__radd__", "__iadd__",
    "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__", "__imul__", "__truediv__", "__itruediv__",
    "view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze", "clone", "float", "half", "bfloat16",
}
_MATMULS = {"matmul", "mm", "__matmul__", "__rmatmul__", "addmm"}


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InvalidSpecError("importing a PyTorch module needs torch: pip install torch") from None
    return torch


class _Capture:
    """The GEMM records of one forward pass, with what chaining and ties need."""

    def __init__(self, torch: Any, module: Any):
        self.torch = torch
        self.params = {id(p): name for name, p in module.named_parameters()}
        self.held: set[int] = set(self.params) | {id(b) for b in module.buffers()}
        self.linear_weights = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Linear)}
        # per GEMM: base name, m, n, k, id of its input, id of its weight, layer index its input came from
        self.records: list[dict[str, Any]] = []
        self.tags: dict[int, int] = {}  # id(tensor) → index of the GEMM whose output it is
        self.keep: list[Any] = []  # tensors whose ids are keys above: alive, so no id is reused
        self.open: dict[int, list[int]] = {}  # id(nn.Linear) → its calls in progress

    def _tag(self, tensor: Any, index: int) -> None:
        if isinstance(tensor, self.torch.Tensor):
            self.tags[id(tensor)] = index
            self.keep.append(tensor)

    def add(self, name: str, x: Any, n: int, k: int, weight: Any) -> int:
        self.keep += [x, weight]
        self.records.append({"name": name, "m": max(1, x.numel() // k), "n": int(n), "k": int(k),
                             "input": id(x), "weight": id(weight), "source": self.tags.get(id(x))})
        return len(self.records) - 1

    # nn.Linear hooks
    def pre_hook(self, qualname: str) -> Any:
        def hook(mod: Any, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else kwargs.get("input")
            index = self.add(qualname, x, mod.out_features, mod.in_features, mod.weight)
            self.open.setdefault(id(mod), []).append(index)
        return hook

    def post_hook(self, mod: Any, args: tuple, output: Any) -> None:
        self._tag(output, self.open[id(mod)].pop())

    # every torch function
    def on_call(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        fname = getattr(func, "__name__", "")
        if fname == "linear":
            x, w = (args + (None, None))[:2]
            x, w = kwargs.get("input", x), kwargs.get("weight", w)
            if id(w) in self.params and id(w) not in self.linear_weights and w.dim() == 2:
                self._tag(out, self.add(self._param_name(w), x, w.shape[0], w.shape[1], w))
            return
        if fname in _MATMULS:
            a, b = (args[1], args[2]) if fname == "addmm" else (args[0], args[1])
            if fname == "__rmatmul__":
                a, b = b, a
            for x, w, weight_first in ((a, b, False), (b, a, True)):
                if id(w) in self.params and id(w) not in self.linear_weights and getattr(w, "ndim", 0) == 2:
                    n, k = (w.shape[0], w.shape[1]) if weight_first else (w.shape[1], w.shape[0])
                    self._tag(out, self.add(self._param_name(w), x, n, k, w))
                    return
            return
        if fname in _ELEMENTWISE:
            tensors = [t for t in list(args) + list(kwargs.values()) if isinstance(t, self.torch.Tensor)]
            sources = {self.tags[id(t)] for t in tensors if id(t) in self.tags}
            others = [t for t in tensors if id(t) not in self.tags]
            if len(sources) == 1 and all(id(t) in self.held or t.numel() == 1 for t in others):
                self._tag(out, sources.pop())

    def _param_name(self, w: Any) -> str:
        name = self.params[id(w)]
        return name[: -len(".weight")] if name.endswith(".weight") else name


def _split_inputs(example_inputs: Any, torch: Any) -> tuple[tuple, dict]:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    raise InvalidSpecError(f"example_inputs must be a tensor, a tuple of positional inputs or a dict of keyword "
                           f"inputs, got {type(example_inputs).__name__}")


def torch_fields(module: Any, example_inputs: Any, *, name: str | None = None,
                 chained: bool | None = None) -> dict[str, Any]:
    """The GEMMs ``module`` runs on ``example_inputs`` (a tensor, a tuple of positional inputs or a
    dict of keyword inputs), as the fields of a :class:`~mpsearch.network.Network` (``Network(**fields)``)
    named ``name`` (default: the module's class name).

    ``chained``: None detects it (see the module docstring); True/False overrides. Raises
    InvalidSpecError (one line) without torch, when the forward pass fails, or when it runs no GEMM
    with a weight.
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise InvalidSpecError(f"from_torch needs a torch.nn.Module, got {type(module).__name__}")
    args, kwargs = _split_inputs(example_inputs, torch)
    capture = _Capture(torch, module)

    class Mode(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            capture.on_call(func, args, kwargs, out)
            return out

    handles = []
    for qualname, sub in module.named_modules():
        if isinstance(sub, torch.nn.Linear):
            handles.append(sub.register_forward_pre_hook(capture.pre_hook(qualname or "linear"), with_kwargs=True))
            handles.append(sub.register_forward_hook(capture.post_hook))
    training = {sub: sub.training for sub in module.modules()}
    try:
        module.eval()
        with torch.no_grad(), Mode():
            module(*args, **kwargs)
    except Exception as err:
        detail = " ".join(str(err).split())
        raise InvalidSpecError(f"running {type(module).__name__} on the example inputs failed: "
                               f"{type(err).__name__}: {detail}") from None
    finally:
        for handle in handles:
            handle.remove()
        for sub, flag in training.items():
            sub.training = flag  # restore each flag: train()/eval() would set them all alike
    return _network(capture.records, name or type(module).__name__, chained, type(module).__name__)


def _network(records: list[dict[str, Any]], name: str, chained: bool | None, what: str) -> dict[str, Any]:
    if not records:
        raise InvalidSpecError(f"{what} ran no nn.Linear and no matmul with a weight parameter on the example "
                               "inputs: there is no GEMM to search")
    calls: dict[str, int] = {}
    names = []
    for rec in records:
        count = calls.get(rec["name"], 0)
        calls[rec["name"]] = count + 1
        names.append(rec["name"] if count == 0 else f"{rec['name']}@{count}")
    layers = tuple(Layer(n, rec["m"], rec["n"], rec["k"]) for n, rec in zip(names, records))

    # Union-find over "reads the same input" and "uses the same weight".
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in ("input", "weight"):
        first: dict[int, int] = {}
        for i, rec in enumerate(records):
            j = first.setdefault(rec[key], i)
            parent[find(i)] = find(j)
    members: dict[int, list[str]] = {}
    for i in range(len(records)):
        members.setdefault(find(i), []).append(names[i])
    groups = tuple((tie_name(m), tuple(m)) for m in members.values() if len(m) > 1)

    if chained is None:
        chained = len(records) > 1 and all(records[i]["source"] == i - 1 for i in range(1, len(records)))
    kind = "chained" if chained else "unchained"
    description = f"{len(layers)} GEMMs captured from {what} ({kind}, {len(groups)} tied groups)"
    return {"name": name, "layers": layers, "groups": groups, "chained": chained, "description": description}
