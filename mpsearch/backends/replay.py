"""The replay backend: latencies recorded on a real GPU, served from ``mpsearch/data/recordings/<recording>/``.

A recording (format: ``mpsearch/data/recordings/README.md``) holds per-op latencies (``ops.csv``) and end-to-end
latencies of whole configurations (``networks.csv``), with the device and versions they were
recorded with (``provenance.json``). A configuration recorded end to end is served as recorded
(``detail`` "end-to-end recording"); any other is the sum of its ops' recorded medians (``detail``
"sum of recorded per-op latencies"), the ops being exactly those of :meth:`Network.ops`. An op the
recording lacks is refused with :class:`UnsupportedConfigError` naming the op and the recording:
replay never guesses.

Where recordings are looked for: the ``data`` argument (``--data``), else ``$MPSEARCH_DATA``, else
the recordings shipped inside the package (``mpsearch/data/recordings/``, also in an installed wheel). That path may be one recording or a directory of recordings;
among several, those whose directory name, device or arch matches ``device`` are candidates, and the
newest one (by its provenance date) that covers the network is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import mpsearch
from mpsearch.backends import config_formats
from mpsearch.backends.base import REPLAY, BackendCapabilities, LatencyBackend, LatencyResult
from mpsearch.errors import BackendUnavailableError, InvalidSpecError, MpsearchError, UnsupportedConfigError
from mpsearch.formats import EMULATED, FORMATS, check_menu, default_menu, parse_menu
from mpsearch.network import Network, Op
from mpsearch.space import Config, SearchSpace

OPS_COLUMNS = (
    "kind", "m", "n", "k", "fmt", "out_fmt", "median_ms", "p10_ms", "p90_ms", "n_samples", "samples_ms",
    "kernel", "check_rel_err",
)
NETWORKS_COLUMNS = ("network", "fingerprint", "config", "median_ms", "p10_ms", "p90_ms", "n_samples", "samples_ms")
# Optional: which pass over the space a row belongs to (a recording may measure every configuration
# several times, in shuffled orders); replay pools the samples of all passes.
NETWORKS_OPTIONAL = ("pass",)
FILES = ("provenance.json", "ops.csv", "networks.csv")
END_TO_END = "end-to-end recording"
SUM_OF_OPS = "sum of recorded per-op latencies"
DATA_ENV = "MPSEARCH_DATA"

OpKey = tuple[str, int, int, int, str, str]


def op_key(op: Op) -> OpKey:
    """What identifies an op's latency: everything but the layer's name."""
    return (op.kind, op.m, op.n, op.k, op.fmt, op.out_fmt)


def describe_op(op: Op | OpKey) -> str:
    """``gemm m=2048 n=16384 k=32768 fp16->int4`` (an op or its key), as error messages show it."""
    kind, m, n, k, fmt, out_fmt = op_key(op) if isinstance(op, Op) else op
    if kind == "convert":
        return f"convert m={m} k={k} {fmt}->{out_fmt}"
    return f"gemm m={m} n={n} k={k} {fmt}->{out_fmt}"


@dataclass(frozen=True)
class Timing:
    """One recorded latency: median and spread (ms) and every sample."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples: tuple[float, ...]


@dataclass(frozen=True)
class Recording:
    """A validated recording directory. ``ops_frame`` and ``networks_frame`` are the CSVs as pandas
    DataFrames (numbers parsed, samples as tuples) for reports; the dicts serve lookups."""

    path: Path
    provenance: dict[str, Any]
    ops: dict[OpKey, Timing]
    networks: dict[tuple[str, str], Timing]
    ops_frame: Any
    networks_frame: Any
    sha256: dict[str, str]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def device(self) -> str:
        return self.provenance["device"]

    @property
    def arch(self) -> int:
        return self.provenance["arch"]

    def formats(self) -> frozenset[str]:
        """Formats with at least one recorded GEMM or end-to-end configuration."""
        found = {fmt for kind, _, _, _, fmt, _ in self.ops if kind == "gemm"}
        for _, config in self.networks:
            found.update(config.split(","))
        return frozenset(found)

    def configs_of(self, fingerprint: str) -> int:
        return sum(1 for fp, _ in self.networks if fp == fingerprint)


# --- finding and loading ----------------------------------------------------------------------

def default_data_root() -> Path:
    """The recordings shipped with the package (package data, so an installed wheel has them too)."""
    return Path(mpsearch.__file__).resolve().parent / "data" / "recordings"


def data_root(data: str | os.PathLike | None = None) -> Path:
    """Where recordings are looked for: ``data``, else $MPSEARCH_DATA, else the package's shipped recordings."""
    if data:
        return Path(data)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else default_data_root()


def find_recordings(root: Path) -> list[Path]:
    """``root`` itself if it is a recording, else its sub-directories that are."""
    if (root / "provenance.json").is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "provenance.json").is_file())


def _matches(path: Path, provenance: dict[str, Any], device: str) -> bool:
    wanted = device.strip().lower()
    arch = provenance.get("arch")
    return (
        wanted == path.name.lower()
        or wanted in str(provenance.get("device", "")).lower()
        or wanted in (str(arch), f"sm_{arch}", f"sm{arch}")
    )


def choose_recording(root: Path, device: str | None = None, network: Network | None = None,
                     menu: Iterable[str] | None = None) -> Path:
    """The recording under ``root`` to use: among those matching ``device`` (all, without one), the
    newest (by its provenance date) that covers ``network`` over ``menu`` (default: its device's
    default menu), else the newest."""
    found = find_recordings(root)
    where = f"{root} (set by --data, ${DATA_ENV} or the recordings shipped with mpsearch)"
    if not root.exists():
        raise BackendUnavailableError(f"no recording: {where} does not exist; check the path")
    if not found:
        raise BackendUnavailableError(
            f"no recording in {where}: a recording is a directory with {', '.join(FILES)} "
            "(see mpsearch/data/recordings/README.md); record one on a GPU or use --backend roofline"
        )
    if device:
        found = [p for p in found if _matches(p, _read_provenance(p / "provenance.json"), device)]
        if not found:
            names = ", ".join(f"{p.name} ({_read_provenance(p / 'provenance.json')['device']})" for p in find_recordings(root))
            raise BackendUnavailableError(
                f"no recording in {where} matches device {device!r}; recordings there: {names}"
            )
    newest_first = sorted(found, key=lambda p: (str(_read_provenance(p / "provenance.json").get("date", "")), p.name),
                          reverse=True)
    if network is not None and len(newest_first) > 1:
        for path in newest_first:
            if ReplayBackend.from_path(path).covers(network, menu)[0]:
                return path
    return newest_first[0]


def load_recording(path: str | os.PathLike) -> Recording:
    """Load and validate the recording in directory ``path`` (cached while its files are unchanged)."""
    path = Path(path).resolve()
    stamps = []
    for name in FILES:
        f = path / name
        if not f.is_file():
            raise BackendUnavailableError(
                f"recording {path} lacks {name}: a recording needs {', '.join(FILES)} (see mpsearch/data/recordings/README.md)"
            )
        st = f.stat()
        stamps.append((st.st_mtime_ns, st.st_size))
    return _load_cached(str(path), tuple(stamps))


@lru_cache(maxsize=8)
def _load_cached(path_text: str, _stamps: tuple) -> Recording:
    path = Path(path_text)
    provenance = _read_provenance(path / "provenance.json")
    ops_frame = _read_table(path / "ops.csv", OPS_COLUMNS, _validate_ops)
    networks_frame = _read_table(path / "networks.csv", NETWORKS_COLUMNS, _validate_networks, NETWORKS_OPTIONAL)
    ops = _pool(ops_frame, ["kind", "m", "n", "k", "fmt", "out_fmt"])
    networks = _pool(networks_frame, ["fingerprint", "config"])
    sha = {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in FILES}
    return Recording(path, provenance, ops, networks, ops_frame, networks_frame, sha)


def _read_provenance(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise BackendUnavailableError(f"{path}: cannot read the recording's provenance: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise InvalidSpecError(f"{path}: malformed JSON ({err.msg} at line {err.lineno}); fix or re-record it") from None
    if not isinstance(data, dict):
        raise InvalidSpecError(f"{path}: must hold a JSON object with device and arch, got {type(data).__name__}")
    device = data.get("device")
    if not isinstance(device, str) or not device.strip():
        raise InvalidSpecError(f"{path}: field device must be the GPU's name (a non-empty string), got {device!r}")
    arch = data.get("arch")
    if isinstance(arch, bool) or not isinstance(arch, int) or arch <= 0:
        raise InvalidSpecError(f"{path}: field arch must be the compute capability as an integer (e.g. 90), got {arch!r}")
    return data


def _read_table(path: Path, columns: tuple[str, ...], validate, optional: tuple[str, ...] = ()) -> Any:
    import pandas as pd

    try:
        # Everything as text first, so each cell is checked and reported by our rules, not coerced.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InvalidSpecError(f"{path}: not a readable CSV ({str(err).strip()}); fix or re-record it") from None
    found = [str(c) for c in frame.columns]
    missing = [c for c in columns if c not in found]
    unknown = [c for c in found if c not in columns and c not in optional]
    if missing or unknown:
        also = f" (optionally also {','.join(optional)})" if optional else ""
        raise InvalidSpecError(
            f"{path}: columns must be exactly {','.join(columns)}{also}; "
            + "; ".join(filter(None, [missing and f"missing {', '.join(missing)}", unknown and f"unexpected {', '.join(unknown)}"]))
        )
    if frame.empty:
        return frame
    return validate(path, frame)


def _fail(path: Path, row: int, column: str, rule: str, value: Any) -> InvalidSpecError:
    # row is the frame's index; +2 because line 1 is the header.
    return InvalidSpecError(f"{path}: line {row + 2}, column {column}: {rule}, got {value!r}")


def _first_bad(path: Path, frame, column: str, bad, rule: str) -> None:
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise _fail(path, row, column, rule, frame[column].iloc[row])


def _numbers(path: Path, frame, column: str, *, positive: bool = True, integer: bool = False, minimum: float = 0):
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce")
    finite = np.isfinite(values.to_numpy(dtype=float))
    if integer:
        bad = ~finite | (values != values.round()) | (values < minimum)
        _first_bad(path, frame, column, bad, f"must be an integer >= {minimum:g}")
        return values.astype(int)
    bad = ~finite | ((values <= 0) if positive else (values < 0))
    _first_bad(path, frame, column, bad, "must be a finite number " + ("> 0" if positive else ">= 0"))
    return values.astype(float)


def _samples(path: Path, frame, counts) -> list[tuple[float, ...]]:
    out = []
    for row, (text, count) in enumerate(zip(frame["samples_ms"], counts)):
        try:
            values = tuple(float(s) for s in text.split())
        except ValueError:
            raise _fail(path, row, "samples_ms", "must be latencies in ms separated by single spaces", text) from None
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise _fail(path, row, "samples_ms", "every sample must be a finite number > 0", text)
        if len(values) != count:
            raise _fail(path, row, "samples_ms", f"must hold n_samples={count} values, has {len(values)}", text)
        out.append(values)
    return out


def _timings(path: Path, frame):
    for column in ("median_ms", "p10_ms", "p90_ms"):
        frame[column] = _numbers(path, frame, column)
    frame["n_samples"] = _numbers(path, frame, "n_samples", integer=True, minimum=1)
    frame["samples_ms"] = _samples(path, frame, frame["n_samples"])


def _validate_ops(path: Path, frame):
    frame = frame.copy()
    _first_bad(path, frame, "kind", ~frame["kind"].isin(["gemm", "convert"]), "must be gemm or convert")
    for column in ("fmt", "out_fmt"):
        _first_bad(path, frame, column, ~frame[column].isin(list(FORMATS)),
                   f"must be a canonical format name ({', '.join(FORMATS)})")
    frame["m"] = _numbers(path, frame, "m", integer=True, minimum=1)
    frame["k"] = _numbers(path, frame, "k", integer=True, minimum=1)
    frame["n"] = _numbers(path, frame, "n", integer=True, minimum=0)
    convert = frame["kind"] == "convert"
    _first_bad(path, frame, "n", convert & (frame["n"] != 0), "must be 0 for a conversion")
    _first_bad(path, frame, "n", ~convert & (frame["n"] < 1), "must be >= 1 for a gemm")
    _first_bad(path, frame, "fmt", convert & (frame["fmt"] != "fp16"), "must be fp16 for a conversion (it reads fp16)")
    _timings(path, frame)
    # No check applies to some ops (a conversion): the recorder may leave the cell empty or write nan.
    blank = frame["check_rel_err"].str.strip().str.lower().isin(["", "nan"])
    errors = _numbers(path, frame.assign(check_rel_err=frame["check_rel_err"].mask(blank, "0")), "check_rel_err", positive=False)
    frame["check_rel_err"] = errors.mask(blank)
    return frame


def _validate_networks(path: Path, frame):
    frame = frame.copy()
    _first_bad(path, frame, "network", frame["network"].str.strip() == "", "must name the network")
    _first_bad(path, frame, "fingerprint", ~frame["fingerprint"].str.fullmatch(r"[0-9a-f]{16}"),
               "must be Network.fingerprint() (16 hex digits)")
    canonical = set(FORMATS)
    bad = frame["config"].map(lambda c: not c or not set(c.split(",")) <= canonical)
    _first_bad(path, frame, "config", bad,
               f"must be canonical format names joined by commas in layer order ({', '.join(FORMATS)})")
    _timings(path, frame)
    if "pass" in frame.columns:
        frame["pass"] = _numbers(path, frame, "pass", integer=True, minimum=1)
    return frame


def _pool(frame, keys: list[str]) -> dict[tuple, Timing]:
    """One Timing per key. A key recorded more than once (in several passes, or for two menus) is
    served as the median of its rows' medians, with every row's samples pooled for the spread, so
    no recording of it is thrown away.

    Why not the median of the pooled samples: each row is one measurement, taken in one state of
    the GPU's power controller, and its samples share that state; the stopping rule takes more
    samples where a measurement is noisier, so pooling would weight the rows taken in an unusual
    state most. Each row counts once."""
    import numpy as np

    out: dict[tuple, Timing] = {}
    if frame.empty:
        return out
    for raw_key, group in frame.groupby(keys, sort=False):
        key = tuple(k.item() if hasattr(k, "item") else k for k in raw_key)  # numpy scalars -> Python
        if len(group) == 1:
            row = group.iloc[0]
            out[key] = Timing(float(row.median_ms), float(row.p10_ms), float(row.p90_ms), tuple(row.samples_ms))
            continue
        pooled = tuple(s for samples in group["samples_ms"] for s in samples)
        p10, p90 = np.percentile(pooled, [10, 90])
        out[key] = Timing(float(np.median(group["median_ms"])), float(p10), float(p90), pooled)
    return out


# --- the backend -------------------------------------------------------------------------------

def possible_ops(space: SearchSpace) -> dict[OpKey, Op]:
    """Every op that some configuration of ``space`` runs, without enumerating the space.

    A layer's ops depend on its own format and, in a chained network, the next layer's (see
    :meth:`Network.ops`), so trying every pair of formats for each layer and its successor (respecting
    ties) and keeping that layer's ops finds them all in O(layers × menu²) calls.
    """
    network = space.network
    decision_of = {layer: name for name, layers in space.decisions for layer in layers}
    base = {name: space.menu[0] for name, _ in space.decisions}
    names = network.layer_names
    found: dict[OpKey, Op] = {}
    for i, layer in enumerate(names):
        here = decision_of[layer]
        after = decision_of[names[i + 1]] if i + 1 < len(names) else here
        for a in space.menu:
            for b in space.menu if after != here else (a,):
                config = space.config_from_params({**base, here: a, after: b})
                for op in network.ops(config.formats):
                    if op.layer == layer:
                        found.setdefault(op_key(op), op)
    return found


class ReplayBackend(LatencyBackend):
    """Latencies from a recording; see the module docstring."""

    def __init__(self, data: str | os.PathLike | None = None, *, device: str | None = None,
                 network: Network | None = None, menu: Iterable[str] | None = None):
        self._use(load_recording(choose_recording(data_root(data), device, network, menu)))

    @classmethod
    def from_path(cls, path: Path) -> "ReplayBackend":
        """The backend over the one recording in ``path``."""
        backend = cls.__new__(cls)
        backend._use(load_recording(path))
        return backend

    def _use(self, recording: Recording) -> None:
        self.recording = recording
        rec = self.recording
        formats = rec.formats()
        self._caps = BackendCapabilities(
            name="replay",
            source=REPLAY,
            device=rec.device,
            arch=rec.arch,
            formats=formats,
            emulated=frozenset(f for f in formats if FORMATS[f].support_on(rec.arch) == EMULATED),
        )

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._caps

    def _where(self) -> str:
        return f"recording {self.recording.name} ({self.recording.path})"

    def missing_ops(self, network: Network, menu: Iterable[str]) -> list[Op]:
        """The ops some configuration of ``network`` over ``menu`` runs that the recording lacks,
        unless every such configuration is recorded end to end (then nothing is missing)."""
        space = SearchSpace(network, tuple(menu))
        needed = possible_ops(space)
        missing = [op for key, op in needed.items() if key not in self.recording.ops]
        if missing and self.recording.configs_of(network.fingerprint()) >= space.size:
            fp = network.fingerprint()
            if all((fp, c.key) in self.recording.networks for c in space.all_configs()):
                return []
        return missing

    def prepare(self, network: Network, menu: tuple[str, ...]) -> None:
        menu = parse_menu(menu)
        check_menu(menu, self.recording.arch, warn=False)
        missing = self.missing_ops(network, menu)
        if missing:
            shown = "; ".join(f"{describe_op(op)} (layer {op.layer})" for op in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise UnsupportedConfigError(
                f"{self._where()} lacks {len(missing)} op(s) that {network.name} over {','.join(menu)} can run: "
                f"{shown}{more}; record them on the GPU, narrow --formats, or use --backend roofline"
            )

    def covers(self, network: Network, menu: Iterable[str] | None = None) -> tuple[bool, str]:
        """Whether the recording serves ``network`` over ``menu`` (default: its device's default
        menu), and why not."""
        menu = tuple(menu) if menu is not None else default_menu(self.recording.arch)
        rec = f"recorded {self.recording.device} data ({self.recording.path})"
        try:
            missing = self.missing_ops(network, menu)
        except MpsearchError as err:
            return False, f"{rec} cannot serve {network.name}: {err}"
        if missing:
            return False, (
                f"{rec} lacks {len(missing)} op(s) of {network.name} over {','.join(menu)} "
                f"(e.g. {describe_op(missing[0])})"
            )
        return True, f"{rec} covers {network.name}"

    def measure(self, network: Network, config: Config) -> LatencyResult:
        formats = config_formats(network, config)
        key = ",".join(formats)
        ops = network.ops(formats)
        timings = [self.recording.ops.get(op_key(op)) for op in ops]
        per_layer: tuple[float, ...] = ()
        if all(t is not None for t in timings):
            sums = dict.fromkeys(network.layer_names, 0.0)
            for op, t in zip(ops, timings):
                sums[op.layer] += t.median_ms
            per_layer = tuple(sums.values())
        extra: dict[str, Any] = {"recording": self.recording.name}
        if per_layer:
            extra["per_layer_from"] = "recorded per-op latencies"
        whole = self.recording.networks.get((network.fingerprint(), key))
        if whole is not None:
            return LatencyResult(
                ms=whole.median_ms, source=REPLAY, device=self.recording.device, samples=whole.samples,
                per_layer_ms=per_layer, detail=END_TO_END, extra=extra,
            )
        if not per_layer:
            missing = [op for op, t in zip(ops, timings) if t is None]
            more = f" (and {len(missing) - 1} more op(s))" if len(missing) > 1 else ""
            raise UnsupportedConfigError(
                f"{self._where()} has no latency for {describe_op(missing[0])} (layer {missing[0].layer}){more}, "
                f"needed by {network.name} in config {key}, and no end-to-end recording of that config; "
                "record it on the GPU, narrow --formats, or use --backend roofline"
            )
        return LatencyResult(
            ms=sum(per_layer), source=REPLAY, device=self.recording.device, per_layer_ms=per_layer,
            detail=SUM_OF_OPS, extra=extra,
        )

    def provenance(self) -> dict[str, Any]:
        rec = self.recording
        return {
            **super().provenance(),
            "recording": rec.name,
            "path": str(rec.path),
            "sha256": dict(rec.sha256),
            "recorded": dict(rec.provenance),
        }
