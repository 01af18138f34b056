"""The `routellm-lc` command itself: every mistake is one `error:` line and an exit status,
never a traceback; `--version`, `python -m routellm_lc`, a closed output pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

from routellm_lc.cli import BROKEN_PIPE_EXIT, main
from routellm_lc.errors import CheckpointError, UnknownRouterError
from routellm_lc.routers import load_router
from routellm_lc.routers.base import _REGISTRY, RouterPluginError
from routellm_lc.server.config import ServerConfig, ServerConfigError

REPO = Path(__file__).resolve().parents[1]


def _exit(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse: usage errors, --version
        return exc.code


def _fails(capsys, argv, *messages, code=2):
    assert _exit(argv) == code
    err = capsys.readouterr().err
    assert "error:" in err, err
    for message in messages:
        assert message in err, err
    assert "Traceback" not in err
    return err


def _run(*args, **kwargs):
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **kwargs.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-m", "routellm_lc", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=kwargs.pop("cwd", REPO),
        timeout=120,
        **kwargs,
    )


# -- --version, python -m --------------------------------------------------------------------
def test_version_prints_the_installed_version(capsys):
    assert _exit(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"routellm-lc {version('routellm-lc')}"


def test_python_dash_m_is_the_command():
    done = _run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"routellm-lc {version('routellm-lc')}"
    done = _run("route", "--router", "random", "--json", "hello")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["router"] == "random"


# -- route: prompts --------------------------------------------------------------------------
def test_route_file_that_does_not_exist(capsys, tmp_path):
    _fails(capsys, ["route", "--router", "random", "--file", str(tmp_path / "no.txt")], "no.txt")


def test_route_file_that_is_a_folder(capsys, tmp_path):
    _fails(capsys, ["route", "--router", "random", "--file", str(tmp_path)], str(tmp_path))


def test_route_file_that_is_not_utf8(capsys, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait\n".encode("latin-1"))
    _fails(capsys, ["route", "--router", "random", "--file", str(path)], "not UTF-8")


def test_route_file_reads_like_calibrate(capsys, tmp_path):
    """One prompt per line (CRLF too, blank lines skipped), or a "prompt" field in .jsonl."""
    text = tmp_path / "p.txt"
    text.write_bytes(b"first prompt\r\n\r\nsecond prompt\r\n")
    rows = tmp_path / "p.jsonl"
    rows.write_text(json.dumps({"prompt": "third prompt"}) + "\n")
    argv = ["route", "--router", "random", "--json", "--file"]
    assert main([*argv, str(text)]) == 0
    assert main([*argv, str(rows)]) == 0
    out = [json.loads(line)["prompt"] for line in capsys.readouterr().out.splitlines()]
    assert out == ["first prompt", "second prompt", "third prompt"]


@pytest.mark.parametrize("prompt", ["", "   ", "\t\n"])
def test_route_refuses_an_empty_prompt(capsys, prompt):
    _fails(capsys, ["route", "--router", "random", "hello", prompt], "Prompt 2 is empty")


def test_route_refuses_an_empty_prompt_of_a_jsonl_file(capsys, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "hi"}) + "\n" + json.dumps({"prompt": " "}) + "\n")
    _fails(
        capsys,
        ["route", "--router", "random", "--file", str(path)],
        "p.jsonl:2: the prompt is blank",
    )


def test_route_stdin_splits_at_newlines_only():
    done = _run(
        "route",
        "--router",
        "random",
        "--json",
        "-",
        input="one\u2028line\r\ntwo\fpages\nthree\rfour\n",
    )
    assert done.returncode == 0, done.stderr
    prompts = [json.loads(line)["prompt"] for line in done.stdout.splitlines()]
    assert prompts == ["one\u2028line", "two\fpages", "three", "four"]


def test_route_stdin_that_is_not_utf8(tmp_path):
    done = _run("route", "--router", "random", "-", input=None, stdin=_bytes_file(tmp_path))
    assert done.returncode == 2
    assert "error: standard input is not UTF-8" in done.stderr
    assert "Traceback" not in done.stderr


def _bytes_file(tmp_path):
    path = tmp_path / "stdin.bin"
    path.write_bytes(b"caf\xe9\n")
    return path.open("rb")


# -- route / calibrate: checkpoints -----------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["route", "--router", "random", "--checkpoint", "somewhere", "hello"],
        ["calibrate", "--router", "random", "--strong-pct", "0.2", "--checkpoint", "somewhere"],
    ],
)
def test_random_router_refuses_a_checkpoint(capsys, argv):
    _fails(capsys, argv, "The random router has no checkpoint: drop --checkpoint.")


def test_a_missing_checkpoint_names_the_flag_as_well_as_the_argument(capsys, tmp_path):
    """Python callers read `checkpoint=`; the command line's `--checkpoint` is named too."""
    with pytest.raises(CheckpointError, match=r"`checkpoint=` in Python"):
        load_router("sw_ranking")
    _fails(
        capsys, ["route", "--router", "sw_ranking", "hello"], "on the command line `--checkpoint`"
    )
    csv_path = tmp_path / "toy.csv"
    csv_path.write_text("prompt,gpt-4-1106-preview,mistralai/Mixtral-8x7B-Instruct-v0.1\na,1,0\n")
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "sw_ranking"]
    _fails(capsys, [*argv, "--output", str(tmp_path / "out")], "`--checkpoint sw_ranking=`")


def test_a_remote_embedder_that_fails_is_an_error_line(capsys, tmp_path, monkeypatch):
    """RouteLLM's own mf checkpoints embed with OpenAI's API: without a key (or network) the
    command says so in one line, not with LiteLLM's traceback."""
    import numpy as np

    from routellm_lc.routers.checkpoints import save_checkpoint

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    folder = tmp_path / "routellm" / "mf_gpt4_augmented"
    config = {"dim": 4, "num_models": 64, "text_dim": 3, "num_classes": 1, "use_proj": True}
    weights = {
        "P.weight": np.ones((64, 4)),
        "text_proj.0.weight": np.ones((4, 3)),
        "classifier.0.weight": np.ones((1, 4)),
    }
    save_checkpoint(folder, config, weights, "")
    message = _fails(capsys, ["route", "--checkpoint", str(folder), "hi"], "embedder litellm:")
    assert "OPENAI_API_KEY" in message and "Traceback" not in message


def test_calibrate_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(200)))
    argv = ["calibrate", "--router", "random", "--strong-pct", "0.25", "--prompts", str(prompts)]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strong_pct"] == 0.25 and result["n_prompts"] == 200
    assert 0.0 <= result["threshold"] <= 1.0 and result["router"] == "random"


# -- serve: ports ----------------------------------------------------------------------------
@pytest.fixture
def no_server(monkeypatch):
    """A server that would start is a failure (and must not bind or block the test)."""
    from routellm_lc.server import runner

    def started(config, **options):
        raise AssertionError(f"serve started on port {config.port}")

    monkeypatch.setattr(runner, "serve", started)


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http"])
def test_serve_refuses_a_port_out_of_range(capsys, no_server, port):
    _fails(capsys, ["serve", "--routers", "random", "--port", port], "argument --port")


@pytest.mark.parametrize("port", [65536, -1])
def test_server_config_refuses_a_port_out_of_range(port, tmp_path, capsys, no_server):
    with pytest.raises(ServerConfigError, match="port must be 0 to 65535"):
        ServerConfig(port=port)
    config = tmp_path / "server.yaml"
    config.write_text(f"routers: [random]\nport: {port}\n")
    _fails(capsys, ["serve", "--config", str(config)], "port must be 0 to 65535")


def test_server_config_takes_the_whole_port_range():
    assert ServerConfig(port=0).port == 0 and ServerConfig(port=65535).port == 65535


# -- unexpected OS errors, closed pipes -------------------------------------------------------
def test_an_os_error_is_an_error_line(capsys, tmp_path):
    """A result file that cannot be written (here: a folder in its place) is one line."""
    csv_path = tmp_path / "toy.csv"
    lines = ["prompt,gpt-4-1106-preview,mistralai/Mixtral-8x7B-Instruct-v0.1"]
    lines += [f"{'x' * n},{n > 5},False" for n in range(1, 11)]
    csv_path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    (out / "toy.json").mkdir(parents=True)
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "random", "--bootstrap", "0"]
    _fails(capsys, [*argv, "--output", str(out), "--no-cache"], "toy.json", "Is a directory")


def test_a_closed_output_pipe_ends_quietly(tmp_path):
    """`routellm-lc route --file many.txt --json | head -1`: the reader leaves early."""
    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(3000)))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-m", "routellm_lc", "route", "--router", "random", "--json"]
    proc = subprocess.Popen(
        [*command, "--file", str(prompts)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    proc.stdout.readline()  # the first decision, as `head -1`, then the pipe closes
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == BROKEN_PIPE_EXIT
    assert err == "", err


# -- router plugins that cannot load ----------------------------------------------------------
@pytest.fixture
def broken_plugins(tmp_path, monkeypatch):
    """An installed package declaring three routers that cannot be used: a module that is not
    there, an object that is not a Router, a module that registers nothing under the name."""
    (tmp_path / "notarouter.py").write_text(
        textwrap.dedent(
            """
            class Thing:
                pass
            """
        )
    )
    info = tmp_path / "badrouters-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: badrouters\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[routellm_lc.routers]\n"
        "gone = no_such_module_xyz:Router\n"
        "thing = notarouter:Thing\n"
        "silent = notarouter\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("gone", "thing", "silent"):
        _REGISTRY.pop(name, None)
    sys.modules.pop("notarouter", None)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gone", "could not be loaded: ModuleNotFoundError: No module named 'no_such_module_xyz'"),
        ("thing", "is <class 'notarouter.Thing'>, not a Router subclass"),
        ("silent", "is module notarouter, which does not register a router named 'silent'"),
    ],
)
def test_a_broken_router_plugin_says_what_is_wrong(broken_plugins, capsys, name, message):
    with pytest.raises(RouterPluginError, match="badrouters") as info:
        load_router(name)
    assert isinstance(info.value, UnknownRouterError) and message in str(info.value)
    assert "Available routers" not in str(info.value)
    err = _fails(capsys, ["route", "--router", name, "hello"], message, "badrouters")
    assert "Available routers" not in err
