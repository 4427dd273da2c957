import csv
import json
import shutil
from pathlib import Path

import pytest

import mpsearch
from mpsearch.backends import make_backend
from mpsearch.backends.replay import (
    END_TO_END,
    SUM_OF_OPS,
    ReplayBackend,
    default_data_root,
    describe_op,
    load_recording,
    op_key,
)
from mpsearch.errors import BackendUnavailableError, InvalidSpecError, UnsupportedConfigError
from mpsearch.network import Layer, Network, load_network
from mpsearch.space import Config, SearchSpace

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "replay_tiny"  # SYNTHETIC recording, see tests/data/make_replay_fixture.py
MENU = ("fp16", "fp8_e4m3", "int8")


@pytest.fixture
def mlp3():
    return load_network(DATA / "tiny_mlp3.toml")


@pytest.fixture
def block2():
    return load_network(DATA / "tiny_block2.toml")


@pytest.fixture
def backend():
    return ReplayBackend(FIXTURE)


def rows(name):
    with open(FIXTURE / name, newline="") as f:
        return list(csv.DictReader(f))


def op_medians():
    return {(r["kind"], int(r["m"]), int(r["n"]), int(r["k"]), r["fmt"], r["out_fmt"]): float(r["median_ms"]) for r in rows("ops.csv")}


def copy_fixture(tmp_path, name="rec"):
    target = tmp_path / name
    shutil.copytree(FIXTURE, target)
    return target


# --- serving --------------------------------------------------------------------------------

def test_a_recorded_configuration_replays_its_recorded_value(backend, mlp3):
    recorded = rows("networks.csv")
    assert recorded, "the fixture must record some configurations end to end"
    for row in recorded:
        config = Config(mlp3.layer_names, tuple(row["config"].split(",")))
        result = backend.measure(mlp3, config)
        assert result.ms == float(row["median_ms"])
        assert result.samples == tuple(float(s) for s in row["samples_ms"].split())
        assert result.detail == END_TO_END
        assert result.source == "replay"
        assert result.device == json.loads((FIXTURE / "provenance.json").read_text())["device"]


def test_a_config_not_recorded_end_to_end_is_the_sum_of_its_ops_and_says_so(backend, mlp3):
    recorded = {r["config"] for r in rows("networks.csv")}
    medians = op_medians()
    config = SearchSpace(mlp3, MENU).parse_config("int8,fp8_e4m3,int8")
    assert config.key not in recorded
    result = backend.measure(mlp3, config)
    expected = sum(medians[op_key(op)] for op in mlp3.ops(config.formats))
    assert result.ms == pytest.approx(expected)
    assert result.detail == SUM_OF_OPS
    assert result.samples == ()
    assert sum(result.per_layer_ms) == pytest.approx(expected)


def test_an_end_to_end_value_differs_from_the_sum_and_wins(backend, mlp3):
    # the fixture's end-to-end rows are 7% above their ops' sum: replay must serve the recording
    config = Config(mlp3.layer_names, ("fp16", "fp16", "fp16"))
    result = backend.measure(mlp3, config)
    summed = sum(op_medians()[op_key(op)] for op in mlp3.ops(config.formats))
    assert result.ms == pytest.approx(summed * 1.07, rel=1e-4)
    assert sum(result.per_layer_ms) == pytest.approx(summed)


def test_unchained_sum_includes_the_conversions(backend, block2):
    medians = op_medians()
    config = Config(block2.layer_names, ("int8", "fp16"))
    ops = block2.ops(config.formats)
    assert [op.kind for op in ops] == ["convert", "gemm", "gemm"]
    result = backend.measure(block2, config)
    assert result.ms == pytest.approx(sum(medians[op_key(op)] for op in ops))
    assert result.per_layer_ms[0] == pytest.approx(medians[op_key(ops[0])] + medians[op_key(ops[1])])


def test_an_unrecorded_shape_is_refused_naming_the_op_and_the_recording(backend):
    net = Network("odd", (Layer("fc1", 64, 96, 256), Layer("fc2", 64, 256, 96)))
    config = Config(net.layer_names, ("fp16", "fp16"))
    with pytest.raises(UnsupportedConfigError) as err:
        backend.measure(net, config)
    message = str(err.value)
    assert "gemm m=64 n=96 k=256 fp16->fp16" in message
    assert "replay_tiny" in message
    with pytest.raises(UnsupportedConfigError, match="gemm m=64 n=96 k=256 fp16->fp16"):
        backend.prepare(net, ("fp16",))


def test_prepare_lists_what_a_menu_lacks(backend, mlp3):
    backend.prepare(mlp3, MENU)  # everything recorded: no error
    with pytest.raises(UnsupportedConfigError) as err:
        backend.prepare(mlp3, ("fp16", "int4"))
    message = str(err.value)
    # 3 layers: fc1, fc2 each have 4 (fmt, out_fmt) pairs, fc3 has 2 (writes fp16); int4 is in 7 of 10
    assert "lacks 7 op(s)" in message
    assert describe_op(("gemm", 64, 128, 256, "fp16", "int4")) in message


def test_prepare_respects_tied_layers(tmp_path):
    # fc1 and fc2 tied: the boundary fc1 -> fc2 never changes format, so fp16->int8 at fc1 is not needed
    rec = copy_fixture(tmp_path)
    text = (rec / "ops.csv").read_text().splitlines()
    kept = [line for line in text if not line.startswith("gemm,64,128,256,fp16,int8,")]
    assert len(kept) == len(text) - 1
    (rec / "ops.csv").write_text("\n".join(kept) + "\n")
    backend = ReplayBackend(rec)
    layers = (Layer("fc1", 64, 128, 256), Layer("fc2", 64, 64, 128), Layer("fc3", 64, 256, 64))
    untied = Network("u", layers)
    tied = Network("t", layers, groups=(("g", ("fc1", "fc2")),))
    with pytest.raises(UnsupportedConfigError, match="fp16->int8"):
        backend.prepare(untied, ("fp16", "int8"))
    backend.prepare(tied, ("fp16", "int8"))


def test_a_network_recorded_end_to_end_needs_no_ops(tmp_path):
    net = Network("one", (Layer("fc1", 8, 16, 32),))
    rec = tmp_path / "only-e2e"
    rec.mkdir()
    (rec / "provenance.json").write_text(json.dumps({"device": "SYNTHETIC", "arch": 90}))
    (rec / "ops.csv").write_text("kind,m,n,k,fmt,out_fmt,median_ms,p10_ms,p90_ms,n_samples,samples_ms,kernel,check_rel_err\n")
    (rec / "networks.csv").write_text(
        "network,fingerprint,config,median_ms,p10_ms,p90_ms,n_samples,samples_ms\n"
        f"one,{net.fingerprint()},fp16,0.5,0.4,0.6,2,0.4 0.6\n"
        f"one,{net.fingerprint()},int8,0.25,0.2,0.3,2,0.2 0.3\n"
    )
    backend = ReplayBackend(rec)
    backend.prepare(net, ("fp16", "int8"))
    assert backend.measure(net, Config(("fc1",), ("int8",))).ms == 0.25
    # fp8 is recorded neither end to end nor per op: every op of the menu is then reported missing
    with pytest.raises(UnsupportedConfigError, match=r"lacks 3 op\(s\).*fp8_e4m3->fp16"):
        backend.prepare(net, ("fp16", "int8", "fp8_e4m3"))


def test_a_key_recorded_twice_keeps_every_sample_and_is_served_as_the_median_of_its_rows(tmp_path, mlp3):
    rec = copy_fixture(tmp_path)
    with open(rec / "networks.csv", "a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerow(
            ["tiny-mlp3", mlp3.fingerprint(), "fp16,fp16,fp16", "1", "1", "1", "3", "1 1 1"])
    first = rows("networks.csv")[0]
    assert first["config"] == "fp16,fp16,fp16"
    pooled = sorted([float(s) for s in first["samples_ms"].split()] + [1.0, 1.0, 1.0])
    result = ReplayBackend(rec).measure(mlp3, Config(mlp3.layer_names, ("fp16",) * 3))
    assert sorted(result.samples) == pooled
    assert result.ms == pytest.approx((float(first["median_ms"]) + 1.0) / 2)


def test_a_pass_with_many_samples_counts_once_in_the_multi_pass_value(tmp_path, mlp3):
    # Three passes; the one taken in an unusual (fast) state of the GPU took 40 samples before its
    # median was pinned, the two usual ones 10 each. Pooled, the fast pass would set the median.
    rec = copy_fixture(tmp_path)
    lines = (rec / "networks.csv").read_text().splitlines()
    header = lines[0] + ",pass"
    body = [line + ",1" for line in lines[1:] if "fp16,fp16,fp16" not in line]
    fp = mlp3.fingerprint()
    for pass_no, ms, n in ((1, 2.0, 10), (2, 1.8, 40), (3, 2.02, 10)):
        samples = " ".join(str(ms) for _ in range(n))
        body.append(f'tiny-mlp3,{fp},"fp16,fp16,fp16",{ms},{ms},{ms},{n},{samples},{pass_no}')
    (rec / "networks.csv").write_text("\n".join([header] + body) + "\n")
    result = ReplayBackend(rec).measure(mlp3, Config(mlp3.layer_names, ("fp16",) * 3))
    assert result.ms == pytest.approx(2.0)
    assert len(result.samples) == 60


# --- provenance and choosing a recording -------------------------------------------------------

def test_provenance_carries_the_recording_and_its_checksums(backend):
    prov = backend.provenance()
    assert prov["source"] == "replay"
    assert prov["recording"] == "replay_tiny"
    assert prov["recorded"]["notes"].startswith("SYNTHETIC")
    assert set(prov["sha256"]) == {"provenance.json", "ops.csv", "networks.csv"}
    json.dumps(prov)


def test_the_default_data_root_is_the_recordings_shipped_inside_the_package():
    root = default_data_root()
    assert root == Path(mpsearch.__file__).resolve().parent / "data" / "recordings"
    assert (root / "h100" / "provenance.json").is_file()


def test_the_env_variable_points_at_the_recordings(monkeypatch, tmp_path):
    copy_fixture(tmp_path, "h100")
    monkeypatch.setenv("MPSEARCH_DATA", str(tmp_path))
    assert ReplayBackend().recording.name == "h100"


def test_several_recordings_are_chosen_by_device(tmp_path):
    copy_fixture(tmp_path, "h100")
    a100 = copy_fixture(tmp_path, "a100")
    prov = json.loads((a100 / "provenance.json").read_text())
    (a100 / "provenance.json").write_text(json.dumps({**prov, "device": "SYNTHETIC A100-SXM4-80GB", "arch": 80}))
    assert ReplayBackend(tmp_path, device="a100").capabilities.arch == 80
    assert ReplayBackend(tmp_path, device="sm_90").recording.name == "h100"
    with pytest.raises(BackendUnavailableError, match="matches device 'l40s'"):
        ReplayBackend(tmp_path, device="l40s")


def _dated(path: Path, date: str) -> Path:
    prov = json.loads((path / "provenance.json").read_text())
    (path / "provenance.json").write_text(json.dumps({**prov, "date": date}))
    return path


def test_without_a_device_the_newest_recording_that_covers_the_network_is_served(tmp_path):
    network = Network.from_dict({"name": "tiny-mlp3", "sizes": [256, 128, 64, 256], "batch": 64})
    _dated(copy_fixture(tmp_path, "h100"), "2026-11-26")
    newer = _dated(copy_fixture(tmp_path, "h200"), "2026-11-29")
    assert ReplayBackend(tmp_path).recording.name == "h200"  # newest, whatever it covers
    assert ReplayBackend(tmp_path, network=network).recording.name == "h200"
    # A newer recording that lacks the network's ops is passed over for an older one that has them.
    ops = (newer / "ops.csv").read_text().splitlines()
    (newer / "ops.csv").write_text("\n".join(ops[:2]) + "\n")
    (newer / "networks.csv").write_text((newer / "networks.csv").read_text().splitlines()[0] + "\n")
    assert ReplayBackend(tmp_path, network=network).recording.name == "h100"
    assert ReplayBackend(tmp_path / "h200", network=network).recording.name == "h200"  # --data picks another


def test_the_newest_recording_that_covers_the_network_over_the_menu_asked_for_is_served(tmp_path):
    network = Network.from_dict({"name": "tiny-mlp3", "sizes": [256, 128, 64, 256], "batch": 64})
    _dated(copy_fixture(tmp_path, "h100"), "2026-11-26")
    newer = _dated(copy_fixture(tmp_path, "h200"), "2026-11-29")
    # The newer recording lacks int8 (not end to end either): it serves fp16/fp8 menus only.
    ops = [line for line in (newer / "ops.csv").read_text().splitlines() if ",int8" not in line]
    (newer / "ops.csv").write_text("\n".join(ops) + "\n")
    (newer / "networks.csv").write_text((newer / "networks.csv").read_text().splitlines()[0] + "\n")
    assert ReplayBackend(tmp_path, network=network, menu=("fp16", "fp8_e4m3")).recording.name == "h200"
    assert ReplayBackend(tmp_path, network=network, menu=("fp16", "int8")).recording.name == "h100"
    backend, _ = make_backend("replay", network, data=str(tmp_path), menu=("fp16", "int8"))
    assert backend.recording.name == "h100"


def test_an_empty_data_directory_is_a_clear_error(tmp_path):
    with pytest.raises(BackendUnavailableError, match="no recording in"):
        ReplayBackend(tmp_path)
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        ReplayBackend(tmp_path / "typo")


# --- the loader's validation ----------------------------------------------------------------------

def edit_cell(path, row, column, value):
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
        fields = list(table[0])
    table[row][column] = value
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)


@pytest.mark.parametrize(
    "file,row,column,value,rule",
    [
        ("ops.csv", 2, "median_ms", "abc", "finite number > 0"),
        ("ops.csv", 3, "p10_ms", "nan", "finite number > 0"),
        ("ops.csv", 0, "p90_ms", "-1", "finite number > 0"),
        ("ops.csv", 4, "median_ms", "inf", "finite number > 0"),
        ("ops.csv", 1, "m", "1.5", "integer"),
        ("ops.csv", 1, "fmt", "fp8", "canonical format name"),
        ("ops.csv", 5, "kind", "matmul", "gemm or convert"),
        ("ops.csv", 2, "samples_ms", "0.1 x 0.2 0.3 0.4", "separated by single spaces"),
        ("ops.csv", 2, "check_rel_err", "-0.1", "finite number >= 0"),
        ("networks.csv", 1, "config", "fp16,half,fp16", "canonical format names"),
        ("networks.csv", 3, "fingerprint", "xyz", "fingerprint"),
        ("networks.csv", 4, "median_ms", "0", "finite number > 0"),
    ],
)
def test_the_loader_names_file_line_and_column_of_a_bad_cell(tmp_path, file, row, column, value, rule):
    rec = copy_fixture(tmp_path)
    edit_cell(rec / file, row, column, value)
    with pytest.raises(InvalidSpecError) as err:
        load_recording(rec)
    message = str(err.value)
    assert str(rec / file) in message
    assert f"line {row + 2}, column {column}" in message
    assert rule in message
    assert repr(value) in message


def test_a_sample_count_that_disagrees_with_n_samples_is_refused(tmp_path):
    rec = copy_fixture(tmp_path)
    edit_cell(rec / "ops.csv", 2, "n_samples", "4")
    with pytest.raises(InvalidSpecError, match="line 4, column samples_ms: must hold n_samples=4 values, has 5"):
        load_recording(rec)


def test_a_conversion_row_must_have_n_zero(tmp_path):
    rec = copy_fixture(tmp_path)
    row = next(i for i, r in enumerate(rows("ops.csv")) if r["kind"] == "convert")
    edit_cell(rec / "ops.csv", row, "n", "5")
    with pytest.raises(InvalidSpecError, match=f"line {row + 2}, column n: must be 0 for a conversion"):
        load_recording(rec)


def test_the_loader_refuses_missing_or_extra_columns(tmp_path):
    rec = copy_fixture(tmp_path)
    text = (rec / "networks.csv").read_text().replace("p10_ms,", "p10,", 1)
    (rec / "networks.csv").write_text(text)
    with pytest.raises(InvalidSpecError, match=r"networks.csv: columns must be exactly .*missing p10_ms; unexpected p10"):
        load_recording(rec)


@pytest.mark.parametrize(
    "content,match",
    [("{not json", "malformed JSON"), ('{"device": "x"}', "field arch"), ('{"arch": 90}', "field device")],
)
def test_the_loader_refuses_bad_provenance(tmp_path, content, match):
    rec = copy_fixture(tmp_path)
    (rec / "provenance.json").write_text(content)
    with pytest.raises(InvalidSpecError, match=match):
        load_recording(rec)


def test_a_missing_file_is_named(tmp_path):
    rec = copy_fixture(tmp_path)
    (rec / "ops.csv").unlink()
    with pytest.raises(BackendUnavailableError, match="lacks ops.csv"):
        load_recording(rec)


def test_an_edited_recording_is_reloaded(tmp_path, mlp3):
    rec = copy_fixture(tmp_path)
    config = Config(mlp3.layer_names, ("fp16",) * 3)
    before = ReplayBackend(rec).measure(mlp3, config).ms
    edit_cell(rec / "networks.csv", 0, "median_ms", "0.5")
    assert before != 0.5
    assert ReplayBackend(rec).measure(mlp3, config).ms == 0.5


# --- the recorded-data report (benchmarks/recorded_report.py) reads recordings through this module ---

def load_benchmark_module(filename: str):
    """A script of benchmarks/ (not a package) imported as a module."""
    import importlib.util
    import sys

    path = Path(__file__).parents[1] / "benchmarks" / filename
    spec = importlib.util.spec_from_file_location(path.stem + "_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def load_report_module():
    return load_benchmark_module("recorded_report.py")


def write_synthetic_mlp6(path, drop_config=None):
    """A SYNTHETIC mlp6 recording of both menus: roofline op times, end-to-end = sum × (1 ± 5%)."""
    import random

    from mpsearch.backends.replay import NETWORKS_COLUMNS, OPS_COLUMNS, possible_ops
    from mpsearch.backends.roofline import DEVICES, op_time_ms
    from mpsearch.network import preset

    rng = random.Random(7)
    net = preset("mlp6")
    path.mkdir(parents=True)
    medians, ops_rows, net_rows, recorded = {}, [], [], set()
    for menu in (("fp16", "fp8_e4m3", "int8"), ("fp16", "int8", "int4")):
        space = SearchSpace(net, menu)
        for key, op in possible_ops(space).items():
            if key not in medians:
                medians[key] = round(op_time_ms(op, DEVICES["h100"]), 6)
                ops_rows.append([*key, medians[key], medians[key], medians[key], 1, medians[key], "synthetic", 0])
        for config in space.all_configs():
            if config.key == drop_config or config.key in recorded:
                continue
            recorded.add(config.key)
            ms = round(sum(medians[op_key(o)] for o in net.ops(config.formats)) * rng.uniform(0.95, 1.05), 6)
            net_rows.append([net.name, net.fingerprint(), config.key, ms, ms, ms, 1, ms])
    for name, columns, table in (("ops.csv", OPS_COLUMNS, ops_rows), ("networks.csv", NETWORKS_COLUMNS, net_rows)):
        with open(path / name, "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([columns, *table])
    (path / "provenance.json").write_text(json.dumps({"device": "SYNTHETIC H100", "arch": 90}))
    return {r[2]: r[3] for r in net_rows}, medians


def test_recorded_report_computes_fronts_speedups_gaps_and_sum_errors(tmp_path):
    report_module = load_report_module()
    e2e, medians = write_synthetic_mlp6(tmp_path / "h100", drop_config="int8,int8,int8,int8,int8,fp16")
    report = report_module.compute(tmp_path / "h100")
    from mpsearch.network import preset

    net = preset("mlp6")
    for m in report.menus.values():
        table = m.table.dropna(subset=["e2e_ms"])
        points = list(zip(table["e2e_ms"], table["capacity"], table["config"]))
        # brute force: a point is on the front if no other is at least as good in both and better in one
        brute = {c for lat, cap, c in points
                 if not any(l2 <= lat and c2 >= cap and (l2 < lat or c2 > cap) for l2, c2, _ in points)}
        assert set(m.front["config"]) == brute
        sums = [sum(medians[op_key(o)] for o in net.ops(c.split(","))) for c in table["config"]]
        errors = [abs(s - e2e[c]) / e2e[c] for s, c in zip(sums, table["config"])]
        row = report.sum_error.set_index("menu").loc[m.name]
        assert row["max_abs_rel_err"] == pytest.approx(max(errors))
        assert row["mean_abs_rel_err"] == pytest.approx(sum(errors) / len(errors))
        gap = report.gaps.set_index("menu").loc[m.name]
        by_cap = {}
        for lat, cap, _ in points:
            by_cap.setdefault(cap, []).append(lat)
        assert gap["gap_ms"] == pytest.approx(max(max(v) - min(v) for v in by_cap.values()))
    assert report.menus["fp8 menu"].missing_e2e == 1
    speed = report.speedups.set_index("format")["speedup"]
    assert speed["int4"] == pytest.approx(e2e["fp16," * 5 + "fp16"] / e2e["int4," * 5 + "int4"])
    text = report_module.render_markdown(report, "fronts.png")
    assert "1 of 729 configurations have no end-to-end recording" in text
    assert "measured on SYNTHETIC H100" in text


def test_recorded_report_leaves_out_a_menu_mostly_unrecorded_end_to_end_and_says_so(tmp_path):
    report_module = load_report_module()
    write_synthetic_mlp6(tmp_path / "h200")
    nets = (tmp_path / "h200" / "networks.csv").read_text().splitlines()
    (tmp_path / "h200" / "networks.csv").write_text("\n".join(l for l in nets if "int4" not in l) + "\n")
    report = report_module.compute(tmp_path / "h200")
    assert list(report.menus) == ["fp8 menu"]
    assert report.unreported == {"int4 menu": (64, 729)}  # the fp16/int8-only configurations
    assert set(report.fronts["menu"]) == {"fp8 menu"}
    text = report_module.render_markdown(report, None)
    assert "int4 menu: only 64 of 729 configurations are recorded end to end; not reported" in text


def test_a_configuration_recorded_in_several_passes_is_served_from_all_of_them(tmp_path):
    rec = copy_fixture(tmp_path)
    lines = (rec / "networks.csv").read_text().splitlines()
    header, first = lines[0], next(csv.reader([lines[1]]))
    rows = [first + ["1"], first[:3] + ["2", "2", "2", "3", "2 2 2"] + ["2"]]
    with open(rec / "networks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header.split(",") + ["pass"])
        w.writerows(rows)
    recording = load_recording(rec)
    timing = recording.networks[(first[1], first[2])]
    assert len(timing.samples) == int(first[6]) + 3  # both passes' samples, pooled
    assert list(recording.networks_frame["pass"]) == [1, 2]
    (rec / "networks.csv").write_text((rec / "networks.csv").read_text().replace(",2\n", ",0\n"))
    with pytest.raises(InvalidSpecError, match="column pass: must be an integer >= 1"):
        load_recording(rec)


# --- recordings measured against a reference (benchmarks/record.py finalize) ----------------------

def load_recorder_module():
    return load_benchmark_module("record.py")


def test_a_recording_timed_against_a_reference_scales_every_ratio_by_one_reference_median(tmp_path, mlp3):
    import csv
    import statistics

    record = load_recorder_module()
    fp = mlp3.fingerprint()
    ref = "fp16,fp16,fp16"
    # Two passes whose GPU state differed by 10%: the raw samples move, the ratios do not.
    rows = []
    for pass_no, slow in ((1, 1.0), (2, 1.1)):
        for config, ratio in ((ref, 1.0), ("int8,int8,int8", 0.5)):
            refs = [2.0 * slow, 2.02 * slow, 1.98 * slow]
            rows.append({"network": "mlp3", "fingerprint": fp, "config": config, "pass": str(pass_no), "reference": ref,
                         "target_samples_ms": " ".join(str(r * ratio) for r in refs),
                         "reference_samples_ms": " ".join(str(r) for r in refs)})
    out = tmp_path / "rec"
    out.mkdir()
    with open(out / "paired.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=record.PAIRED_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    record.main(["finalize", "--out", str(out)])
    written = list(csv.DictReader(open(out / "networks.csv")))
    scale = statistics.median([2.0, 2.02, 1.98, 2.2, 2.222, 2.178])
    assert len(written) == 4 and {r["pass"] for r in written} == {"1", "2"}
    for r in written:
        expected = scale * (0.5 if r["config"] == "int8,int8,int8" else 1.0)
        assert [float(x) for x in r["samples_ms"].split()] == pytest.approx([expected] * 3, rel=1e-3)
    assert json.loads((out / "reference.json").read_text())["reference_median_ms"] == {f"{fp}/{ref}": pytest.approx(scale)}


def test_finalize_refuses_a_paired_row_whose_samples_do_not_pair_up(tmp_path):
    import csv

    record = load_recorder_module()
    out = tmp_path / "rec"
    out.mkdir()
    with open(out / "paired.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=record.PAIRED_COLUMNS, restval="")
        writer.writeheader()
        writer.writerow({"network": "m", "fingerprint": "f", "config": "fp16", "pass": "1", "reference": "fp16",
                         "target_samples_ms": "1 2 3", "reference_samples_ms": "1 2"})
    with pytest.raises(SystemExit, match="pair up"):
        record.main(["finalize", "--out", str(out)])
