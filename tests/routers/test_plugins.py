"""Routers from installed packages: the `routellm_lc.routers` entry-point group."""

from __future__ import annotations

import textwrap

import pytest

from routellm_lc.cli import main
from routellm_lc.errors import UnknownRouterError
from routellm_lc.routers import available_routers, load_router
from routellm_lc.routers.base import _REGISTRY


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package installed the way pip leaves one (a module and its .dist-info on sys.path),
    declaring two routers: a class, and a module whose import registers its router."""
    (tmp_path / "lenrouter.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from routellm_lc.routers import Router, register_router

            class LengthRouter(Router):
                \"\"\"Longer prompts are harder.\"\"\"

                @classmethod
                def from_pretrained(cls, checkpoint=None, **kwargs):
                    return cls()

                def strong_win_rate(self, prompts):
                    return np.array([min(len(p) / 100, 1.0) for p in prompts])

            @register_router("selfreg")
            class SelfRegistered(LengthRouter):
                pass
            """
        )
    )
    info = tmp_path / "lenrouter-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lenrouter\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[routellm_lc.routers]\nbylength = lenrouter:LengthRouter\nselfreg = lenrouter\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("bylength", "selfreg"):
        _REGISTRY.pop(name, None)


def test_installed_routers_load_by_name(installed_plugin):
    assert {"bylength", "selfreg"} <= set(available_routers())
    router = load_router("bylength")
    assert router.name == "bylength"
    assert list(router.strong_win_rate(["x" * 10, "x" * 300])) == [0.1, 1.0]
    assert load_router("selfreg").strong_win_rate(["x" * 50])[0] == 0.5


def test_the_cli_finds_installed_routers(installed_plugin, capsys):
    """README: any router name `load_router` knows works in the CLI, your own included."""
    assert main(["route", "--router", "bylength", "--threshold", "0.5", "--json", "x" * 80]) == 0
    assert '"route": "strong"' in capsys.readouterr().out


def test_unknown_names_still_fail_clearly():
    with pytest.raises(UnknownRouterError, match="Unknown router 'nope'"):
        load_router("nope")
