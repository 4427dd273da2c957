"""Networks captured from PyTorch modules give the shapes, ties and chaining a hand-written spec gives."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from mpsearch.errors import InvalidSpecError  # noqa: E402
from mpsearch.network import Network, resolve_network  # noqa: E402
from tests.network_shapes import structure, tied_names  # noqa: E402


def mlp():
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 32), nn.GELU(),
                         nn.Linear(32, 16))


def test_an_mlp_is_a_chained_spec_with_one_row_per_token():
    net = Network.from_torch(mlp(), torch.randn(2, 5, 64))  # 2 sequences of 5 tokens: m = 10
    by_hand = Network.from_dict({"name": "h", "batch": 10, "sizes": [64, 128, 32, 16]})
    assert structure(net) == structure(by_hand)
    assert net.chained and net.groups == ()
    assert net.layer_names == ("0", "3", "5")  # state_dict names: a checkpoint's "0.weight" is found


class Attention(nn.Module):
    """A Llama-style block with grouped-query attention, named as Hugging Face names it."""

    def __init__(self, hidden=64, heads=4, kv_heads=2, inter=96):
        super().__init__()
        self.heads, self.kv_heads, self.dim = heads, kv_heads, hidden // heads
        self.input_layernorm = nn.LayerNorm(hidden)
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(hidden, heads * self.dim, bias=False)
        self.self_attn.k_proj = nn.Linear(hidden, kv_heads * self.dim, bias=False)
        self.self_attn.v_proj = nn.Linear(hidden, kv_heads * self.dim, bias=False)
        self.self_attn.o_proj = nn.Linear(heads * self.dim, hidden, bias=False)
        self.post_attention_layernorm = nn.LayerNorm(hidden)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.mlp.up_proj = nn.Linear(hidden, inter, bias=False)
        self.mlp.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        h = self.input_layernorm(x)
        a = self.self_attn
        q = a.q_proj(h).view(b, t, self.heads, self.dim).transpose(1, 2)
        k = a.k_proj(h).view(b, t, self.kv_heads, self.dim).transpose(1, 2)
        v = a.v_proj(h).view(b, t, self.kv_heads, self.dim).transpose(1, 2)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / self.dim ** 0.5, dim=-1) @ v  # no weight: not a layer
        x = x + a.o_proj(att.transpose(1, 2).reshape(b, t, -1))
        h = self.post_attention_layernorm(x)
        return x + self.mlp.down_proj(F.silu(self.mlp.gate_proj(h)) * self.mlp.up_proj(h))


class Decoder(nn.Module):
    def __init__(self, blocks=2):
        super().__init__()
        self.layers = nn.ModuleList(Attention() for _ in range(blocks))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 96, "num_hidden_layers": 2}


def test_an_attention_block_ties_qkv_and_gate_up_and_is_unchained():
    net = Network.from_torch(Attention(), torch.randn(3, 7, 64))
    by_hand = Network.from_dict({"name": "h", "batch": 21, "chained": False, "layers": [
        {"name": "q", "n": 64, "k": 64}, {"name": "k", "n": 32, "k": 64}, {"name": "v", "n": 32, "k": 64},
        {"name": "o", "n": 64, "k": 64}, {"name": "gate", "n": 96, "k": 64}, {"name": "up", "n": 96, "k": 64},
        {"name": "down", "n": 64, "k": 96}], "groups": {"qkv": ["q", "k", "v"], "gate_up": ["gate", "up"]}})
    assert structure(net) == structure(by_hand)
    assert tied_names(net) == [("mlp.gate_proj", "mlp.up_proj"),
                               ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")]
    assert dict(net.groups)["mlp.gate_proj+up_proj"] == ("mlp.gate_proj", "mlp.up_proj")


def test_a_captured_decoder_is_the_network_its_config_json_describes():
    captured = Network.from_torch(Decoder(), torch.randn(2, 8, 64))
    from_config = Network.from_hf_config(TINY_LLAMA, tokens=16)
    assert captured.layer_names == from_config.layer_names
    assert structure(captured) == structure(from_config)
    assert tied_names(captured) == tied_names(from_config)


class Conv1D(nn.Module):
    """GPT-2's linear layer: a (k, n) weight parameter applied with torch.addmm, not an nn.Linear."""

    def __init__(self, k, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, n))
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class RawWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = Conv1D(32, 48)
        self.proj = nn.Parameter(torch.randn(16, 48))  # (n, k), used as F.linear does
        self.head = nn.Parameter(torch.randn(16, 8))  # (k, n), used as x @ W

    def forward(self, x):
        return F.linear(torch.tanh(self.c_fc(x)), self.proj) @ self.head


def test_matmuls_with_a_weight_parameter_are_layers_with_their_layout_read_right():
    net = Network.from_torch(RawWeights(), torch.randn(4, 32))
    assert [(l.name, l.m, l.n, l.k) for l in net.layers] == [
        ("c_fc", 4, 48, 32), ("proj", 4, 16, 48), ("head", 4, 8, 16)]
    assert net.chained  # tanh and nothing else between them


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        return self.out(F.relu(self.fc(F.relu(self.fc(x)))))


def test_a_module_called_twice_is_two_tied_layers():
    net = Network.from_torch(Shared(), torch.randn(5, 16))
    assert net.layer_names == ("fc", "fc@1", "out")
    assert net.groups == (("fc+fc@1", ("fc", "fc@1")),)  # one weight is stored in one format
    assert net.chained


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        y = self.fc1(x)
        return self.fc3(y + self.fc2(F.relu(y)))  # fc3 reads a sum with a skip, not fc2's output alone


def test_a_residual_add_between_layers_makes_the_network_unchained():
    net = Network.from_torch(Residual(), torch.randn(2, 8))
    assert not net.chained and net.groups == ()
    assert Network.from_torch(Residual(), torch.randn(2, 8), chained=True).chained  # the caller may insist


def test_capture_leaves_the_module_as_it_was_and_works_on_the_meta_device():
    model = mlp()
    model.train()
    model[0].eval()
    Network.from_torch(model, torch.randn(3, 64))
    assert model.training and not model[0].training and model[3].training
    assert not model[0]._forward_pre_hooks and not model[0]._forward_hooks
    with torch.device("meta"):
        big = Decoder()
    net = Network.from_torch(big, torch.empty(1, 4096, 64, device="meta"), name="big")
    assert net.name == "big" and {l.m for l in net.layers} == {4096}


def test_keyword_inputs_are_passed_as_keywords():
    class Kw(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, *, pixels):
            return self.fc(pixels)

    assert Network.from_torch(Kw(), {"pixels": torch.randn(6, 8)}).layers[0].m == 6


def test_a_module_without_gemms_or_a_failing_forward_is_a_one_line_error():
    with pytest.raises(InvalidSpecError, match="ReLU ran no nn.Linear and no matmul with a weight parameter"):
        Network.from_torch(nn.ReLU(), torch.randn(2, 3))
    with pytest.raises(InvalidSpecError, match="running Sequential on the example inputs failed: RuntimeError") as err:
        Network.from_torch(mlp(), torch.randn(2, 63))
    assert "\n" not in str(err.value)
    with pytest.raises(InvalidSpecError, match="from_torch needs a torch.nn.Module, got function"):
        Network.from_torch(mlp, torch.randn(2, 64))


MODEL_FILE = '''
import torch
from torch import nn

def build():
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 6)), torch.randn(3, 12)

def broken():
    raise ValueError("no weights here")

not_callable = 3
'''


def test_resolve_network_builds_module_callable_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "usermodels.py").write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    by_module = resolve_network("usermodels:build")
    by_file = resolve_network(f"{tmp_path / 'usermodels.py'}:build")
    assert structure(by_module) == structure(by_file) == (True, [(3, 24, 12), (3, 6, 24)], [])


@pytest.mark.parametrize("spec, message", [
    ("usermodels:broken", r"usermodels:broken: calling broken\(\) failed: ValueError: no weights here"),
    ("usermodels:missing", "usermodels has no attribute 'missing'"),
    ("usermodels:not_callable", "not_callable must be a callable returning"),
    ("no_such_module_xyz:build", "cannot import no_such_module_xyz: ModuleNotFoundError"),
])
def test_bad_module_callables_are_one_line_errors(tmp_path, monkeypatch, spec, message):
    (tmp_path / "usermodels.py").write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidSpecError, match=message):
        resolve_network(spec)


def test_code_is_not_run_where_it_is_not_allowed(tmp_path, monkeypatch):
    (tmp_path / "usermodels.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidSpecError, match="names code to run"):
        resolve_network("usermodels:build", allow_code=False)
