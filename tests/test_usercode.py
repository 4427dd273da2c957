"""Module names a user types (plug-in objectives, network builders) resolve the same way everywhere:
the current directory is searched, after the installed packages."""

from __future__ import annotations

import sys

from mpsearch.network import resolve_network
from mpsearch.objectives import load_callable
from mpsearch.usercode import import_user_module


def _fresh_sys_path(monkeypatch, *front):
    """sys.path without the current directory (as under the installed console script)."""
    monkeypatch.setattr(sys, "path", [*map(str, front), *[p for p in sys.path if p not in ("", ".")]])


def test_a_module_in_the_current_directory_imports_but_never_shadows_an_installed_one(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "shadowed_pkg_xyz").mkdir(parents=True)
    (site / "shadowed_pkg_xyz" / "__init__.py").write_text("WHERE = 'installed'\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "shadowed_pkg_xyz.py").write_text("WHERE = 'cwd'\n")
    (work / "only_here_xyz.py").write_text("WHERE = 'cwd'\n")
    monkeypatch.chdir(work)
    _fresh_sys_path(monkeypatch, site)
    for name in ("shadowed_pkg_xyz", "only_here_xyz"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert import_user_module("shadowed_pkg_xyz").WHERE == "installed"
    assert import_user_module("only_here_xyz").WHERE == "cwd"
    # It stays importable: a plug-in's child process imports it again from a copy of sys.path.
    assert str(work) in sys.path


def test_objectives_and_networks_find_the_same_module_in_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "user_both_xyz.py").write_text(
        "from mpsearch.network import Layer, Network\n"
        "def net():\n    return Network('tiny', (Layer('fc1', 16, 32, 64),))\n"
        "def score(config, network):\n    return 1.0\n")
    monkeypatch.chdir(tmp_path)
    _fresh_sys_path(monkeypatch)
    monkeypatch.delitem(sys.modules, "user_both_xyz", raising=False)
    network = resolve_network("user_both_xyz:net")
    assert [layer.name for layer in network.layers] == ["fc1"]
    assert load_callable("user_both_xyz:score").__module__ == "user_both_xyz"
