"""Argument types and option groups that several sub-commands share (they import this module, not
each other)."""

from __future__ import annotations

import argparse
from typing import Any


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``, with a message naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


NETWORK_HELP = ("preset (mlp6, mlp6-decode, llama8b-block-prefill, ...), a TOML file, a Hugging Face "
                "config.json[:tokens=N,blocks=N], or MODULE:CALLABLE returning (nn.Module, example_inputs) or a Network")


def add_network_arg(p: argparse.ArgumentParser) -> None:
    """The NETWORK positional and the options of a Hugging Face config.json."""
    p.add_argument("network", help=NETWORK_HELP)
    p.add_argument("--tokens", type=positive_int, help="config.json: tokens per forward pass (the GEMMs' M)")
    p.add_argument("--blocks", type=positive_int, help="config.json: how many decoder blocks (default: all of the model's)")


def network_from_args(args: argparse.Namespace) -> Any:
    """The network the user typed (a MODULE:CALLABLE runs their code: only ever from the command line)."""
    from mpsearch.network import resolve_network

    return resolve_network(args.network, tokens=args.tokens, blocks=args.blocks)


def add_backend_args(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    from mpsearch.backends import TIMINGS, backend_names

    g = p.add_argument_group("latency backend")
    g.add_argument("--backend", choices=backend_names(), default=default,
                   help="where latency comes from: auto picks cutlass on a GPU, else replay when recorded data "
                        "covers the network, else roofline, and says why (default: %(default)s)")
    g.add_argument("--device", help="roofline: the GPU to model (h100, a100, h200, l40s); replay: the recording "
                                    "(a resumed study keeps its own unless this is given)")
    g.add_argument("--data", help="replay: a recording folder (default: the recordings shipped with mpsearch)")
    g.add_argument("--cache-dir", help="cutlass: compiled-kernel cache (default: ~/.cache/mpsearch/cutlass)")
    g.add_argument("--timing", choices=TIMINGS, default=None,
                   help="cutlass/torch: how a configuration is timed: sustained (default: alone, back to back until "
                        "clocks and latency are steady, as a serving GPU at its power cap), paired (sustained, "
                        "alternately with one reference configuration, on the study's scale: repeatable, but at "
                        "the clock the pair's power sets) or burst (idle-cooled first); a resumed study or a worker keeps "
                        "the study's own")


def backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The backend options of ``args`` as keyword arguments of :mod:`mpsearch.api`."""
    return {"backend": args.backend, "device": args.device, "data": args.data, "cache_dir": args.cache_dir,
            "timing": args.timing}


def add_coordination_args(p: argparse.ArgumentParser) -> None:
    """Heartbeat, sweep and plug-in timeout options (search, resume and worker share them)."""
    from mpsearch.search.workers import DEFAULT_HEARTBEAT_S, DEFAULT_OBJECTIVE_TIMEOUT_S, DEFAULT_STALE_AFTER_S

    g = p.add_argument_group("workers and faults")
    g.add_argument("--heartbeat", type=positive_float, default=DEFAULT_HEARTBEAT_S, metavar="S",
                   help="seconds between heartbeats of a running trial (default: %(default)g)")
    g.add_argument("--stale-after", type=positive_float, default=DEFAULT_STALE_AFTER_S, metavar="S",
                   help="a running trial with no heartbeat for this long belongs to a dead worker: it is failed "
                        "and its configuration measured again (default: %(default)g)")
    g.add_argument("--objective-timeout", type=positive_float, default=DEFAULT_OBJECTIVE_TIMEOUT_S, metavar="S",
                   help="a plug-in objective running longer fails its trial (default: %(default)g)")


def coordination_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"heartbeat_s": args.heartbeat, "stale_after_s": args.stale_after,
            "objective_timeout_s": args.objective_timeout}


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON document on stdout; the human-readable lines go to stderr")
