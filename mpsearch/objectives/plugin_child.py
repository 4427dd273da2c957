"""The child process a plug-in objective runs in (started by :mod:`mpsearch.objectives.plugin`).

Protocol, over two pipes whose descriptors are the command-line arguments (the child's stdin,
stdout and stderr stay the user's, so a plug-in may print):

- parent → child, once: ``(sys_path, target, network_dict)``; the child imports ``target`` and
  answers ``("ready", None)`` or ``("error", message)`` (then exits);
- parent → child, per call: a tuple of format names, one per layer; the child answers
  ``("value", float)``, ``("not a number", type_name, repr)`` or ``("raised", description)``;
- ``None`` or a closed pipe: the child exits.

Only plain strings and floats travel back, so nothing the plug-in returns is unpickled by the
parent. The child ignores Ctrl-C (only the parent's means "interrupted") and, on Linux, is killed
by the kernel if the parent dies.
"""

from __future__ import annotations

import numbers
import signal
import sys
from multiprocessing.connection import Connection


def _die_with_parent(parent_pid: int) -> None:
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: the child still exits when it next reads a closed pipe
    import os

    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def _describe(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"called sys.exit({err.code!r})"
    text = str(err).strip().splitlines()
    return f"raised {type(err).__name__}" + (f": {text[0]}" if text else "")


def serve(requests: Connection, answers: Connection) -> None:
    from mpsearch.errors import InvalidSpecError
    from mpsearch.network import Network
    from mpsearch.objectives import load_callable
    from mpsearch.space import Config

    sys_path, target, network_dict = requests.recv()
    sys.path[:] = sys_path
    try:
        func = load_callable(target)
    except InvalidSpecError as err:
        answers.send(("error", str(err)))
        return
    except BaseException as err:  # noqa: BLE001 - an import that calls sys.exit or raises anything else
        answers.send(("error", f"objective {target!r}: importing it {_describe(err)}"))
        return
    network = Network.from_dict(network_dict, source=f"objective {target}")
    answers.send(("ready", None))
    while True:
        try:
            formats = requests.recv()
        except EOFError:
            return
        if formats is None:
            return
        try:
            value = func(Config(network.layer_names, tuple(formats)), network)
        except BaseException as err:  # noqa: BLE001 - sys.exit and KeyboardInterrupt fail only this call
            answers.send(("raised", _describe(err)))
            continue
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            answers.send(("value", float(value)))
        else:
            answers.send(("not a number", type(value).__name__, repr(value)[:200]))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    read_fd, write_fd, parent_pid = (int(a) for a in sys.argv[1:4])
    _die_with_parent(parent_pid)
    serve(Connection(read_fd, writable=False), Connection(write_fd, readable=False))


if __name__ == "__main__":
    main()
