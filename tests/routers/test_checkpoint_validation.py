"""Malformed mf and sw_ranking checkpoints fail at load with a `CheckpointError` naming the folder
and the field: not as a raw KeyError/ValueError, not on the first request, and not by loading
and then scoring wrong (a short `feature_mean` broadcast, NaN weights scoring NaN)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from routellm_lc.cli import main
from routellm_lc.errors import CheckpointError
from routellm_lc.routers.checkpoints import save_checkpoint
from routellm_lc.routers.mf import MatrixFactorizationRouter
from routellm_lc.routers.sw_ranking import SWRankingRouter

FEATURES = ["log_chars", "log_words"]


class Constant:
    """An embedder of a given width (`dim`, 0 = not known before a call, like LiteLLM's)."""

    name = "constant"

    def __init__(self, width: int, dim: int | None = None) -> None:
        self.width = width
        self.dim = width if dim is None else dim

    def embed(self, texts):
        return np.full((len(texts), self.width), 1 / math.sqrt(self.width), dtype=np.float32)


def _mf(folder, tensors=None, **changes):
    """A dim-1 mf checkpoint on 3-d embeddings + FEATURES; `changes` edit config.json (a value
    of None removes the field)."""
    text_dim = 3 + len(FEATURES)
    config = {
        "dim": 1,
        "num_models": 2,
        "text_dim": text_dim,
        "num_classes": 1,
        "use_proj": True,
        "model_names": ["s", "w"],
        "strong_model": "s",
        "weak_model": "w",
        "embedder": "local",
        "features": FEATURES,
        "feature_mean": [1.0, 1.0],
        "feature_std": [1.0, 2.0],
    }
    config.update(changes)
    config = {k: v for k, v in config.items() if v is not None}
    weights = {
        "P.weight": np.array([[1.0], [-1.0]]),
        "text_proj.0.weight": np.full((1, text_dim), 0.3),
        "classifier.0.weight": np.array([[0.5]]),
    }
    save_checkpoint(folder, config, weights | (tensors or {}), "# t\n")
    return folder


def test_the_valid_mf_checkpoint_loads_and_scores(tmp_path):
    router = MatrixFactorizationRouter.from_pretrained(_mf(tmp_path / "ck"), embedder=Constant(3))
    x = np.concatenate([np.full(3, 1 / math.sqrt(3)), (np.log1p([11.0, 2.0]) - 1) / [1, 2]])
    expected = 1 / (1 + np.exp(-0.3 * x.sum()))
    assert router.strong_win_rate(["hello world"])[0] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"feature_mean": [0.0]}, "feature_mean has 1 values, expected 2"),  # used to broadcast
        ({"feature_mean": None}, "missing required field(s): feature_mean"),  # was a KeyError
        ({"feature_std": [1.0, 0.0]}, "feature_std must hold positive values"),
        ({"feature_std": "wide"}, "feature_std must be a list of numbers"),
        ({"dim": "abc"}, "dim must be a number, got 'abc'"),  # was a bare ValueError
        ({"dim": 1.5}, "dim must be a whole number"),
        ({"num_models": 0}, "num_models must be at least 1"),
        ({"use_proj": "false"}, "use_proj must be true or false"),
        ({"features": ["log_chars", "nope"]}, "features names unknown feature(s) ['nope']"),
        ({"features": ["log_chars", "log_chars"]}, "features repeats log_chars"),
        ({"model_names": "sw"}, "model_names must be a list of names"),
        ({"score_cdfs": {"projection": []}}, "score_cdfs.projection has 0 values"),
        ({"score_cdfs": {"projection": [1.0, 0.0]}}, "score_cdfs.projection must be sorted"),
        ({"score_cdfs": {"projection": [0.0, math.nan]}}, "score_cdfs.projection holds NaN"),
        ({"score_cdfs": {"length": [0.0, 1.0]}}, "score_cdfs names ['length']"),
        ({"score_cdfs": [0.0, 1.0]}, "score_cdfs must map names to values"),
        ({"logit_prior": {"nope": 1.0}}, "logit_prior names ['nope']"),
        ({"logit_prior": {"log_chars": "big"}}, "logit_prior.log_chars must be a number"),
        ({"logit_bias": math.inf}, "logit_bias must be a finite number"),
        ({"cdf_scale": "steep", "score_cdfs": {"projection": [0, 1]}}, "cdf_scale must be a"),
        ({"text_dim": 2, "features": FEATURES}, "text_dim=2 leaves no room"),
    ],
)
def test_malformed_mf_config_fails_at_load_naming_folder_and_field(tmp_path, changes, field):
    folder = _mf(tmp_path / "ck", **changes)
    with pytest.raises(CheckpointError) as info:
        MatrixFactorizationRouter.from_pretrained(folder, embedder=Constant(3))
    assert str(folder) in str(info.value)
    assert field in str(info.value)


def test_unknown_embedder_spec_fails_at_load(tmp_path):
    folder = _mf(tmp_path / "ck", embedder="wat")
    with pytest.raises(CheckpointError, match="embedder cannot be used: Unknown embedder 'wat'"):
        MatrixFactorizationRouter.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="Unknown embedder 'nope'"):  # an override too
        MatrixFactorizationRouter.from_pretrained(_mf(tmp_path / "ok"), embedder="nope")


def test_embedder_of_another_width_fails_at_load(tmp_path):
    """A 1536-d (OpenAI) checkpoint loaded with the 384-d local embedder used to load and then
    fail every request with a matmul shape error."""
    folder = _mf(tmp_path / "ck")  # 3-d embeddings, config embedder "local" (384-d)
    with pytest.raises(CheckpointError) as info:
        MatrixFactorizationRouter.from_pretrained(folder)
    message = str(info.value)
    assert str(folder) in message and "'local' gives 384-d" in message and "3-d ones" in message
    with pytest.raises(CheckpointError, match="'constant' gives 4-d embeddings"):
        MatrixFactorizationRouter.from_pretrained(folder, embedder=Constant(4))


def test_embedder_width_unknown_at_load_is_checked_on_first_use(tmp_path):
    router = MatrixFactorizationRouter.from_pretrained(
        _mf(tmp_path / "ck"), embedder=Constant(4, dim=0)
    )
    with pytest.raises(CheckpointError, match="gives 4-d embeddings, but the checkpoint was"):
        router.strong_win_rate(["hello"])
    with pytest.raises(CheckpointError, match="gives 4-d embeddings"):
        router.model_scores(["hello"])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("tensor", ["P.weight", "text_proj.0.weight", "classifier.0.weight"])
def test_non_finite_mf_weights_fail_at_load(tmp_path, tensor, bad):
    """NaN weights used to load: every score NaN, every call routed weak even at threshold 0."""
    weights = {
        "P.weight": np.array([[1.0], [-1.0]]),
        "text_proj.0.weight": np.full((1, 5), 0.3),
        "classifier.0.weight": np.array([[0.5]]),
    }
    weights[tensor] = weights[tensor].copy()
    weights[tensor].flat[-1] = bad
    folder = _mf(tmp_path / "ck", tensors=weights)
    with pytest.raises(CheckpointError, match=f"holds NaN or infinite values in: {tensor}"):
        MatrixFactorizationRouter.from_pretrained(folder, embedder=Constant(3))


def test_route_command_reports_a_malformed_checkpoint_without_a_traceback(tmp_path, capsys):
    folder = _mf(tmp_path / "ck", feature_mean=None)
    assert main(["route", "--checkpoint", str(folder), "hello"]) == 2
    err = capsys.readouterr().err
    assert "missing required field(s): feature_mean" in err and "Traceback" not in err


# -- sw_ranking --------------------------------------------------------------------------------
TABLE = {"p1": [1.0, 0.0], "p2": [0.0, 1.0], "q": [0.6, 0.8]}


class Table:
    name = "table"
    dim = 2

    def embed(self, texts):
        return np.array([TABLE[t] for t in texts], dtype=np.float32)


def _sw(folder):
    battles = [
        {"prompt": "p1", "model_a": "big", "model_b": "small", "winner": "model_a"},
        {"prompt": "p2", "model_a": "small", "model_b": "big", "winner": "tie"},
    ]
    SWRankingRouter("big", "small", embedder=Table()).fit(battles).save_pretrained(folder)
    return folder


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | changes))


def _edit_tensor(folder, name, edit):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors[name] = tensors[name].copy()
    edit(tensors[name])
    save_file(tensors, str(folder / "model.safetensors"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"embedding_dim": "abc"}, "embedding_dim must be a number"),  # was a bare ValueError
        ({"models": "big"}, "models must be a list of names"),
        ({"tiers": ["big", "small"]}, "tiers must map each model to its tier"),
        ({"l2": -1.0}, "l2 must be at least 0"),
        ({"l2": "none"}, "l2 must be a number"),
        ({"embedder": "wat"}, "embedder cannot be used"),
        ({"embedder": "local"}, "'local' gives 384-d embeddings, but the checkpoint was trained"),
    ],
)
def test_malformed_sw_ranking_config_fails_at_load(tmp_path, changes, field):
    folder = _sw(tmp_path / "ck")
    _edit_config(folder, **changes)
    with pytest.raises(CheckpointError) as info:
        SWRankingRouter.from_pretrained(folder)
    assert str(folder) in str(info.value) and field in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("prompt_embeddings", np.nan, "holds NaN or infinite values in: prompt_embeddings"),
        ("battle_weight", np.inf, "holds NaN or infinite values in: battle_weight"),
        ("battle_weight", -1.0, "battle_weight holds negative weights"),
        ("battle_outcome", 2.0, "battle_outcome holds values outside [0, 1]"),
        ("battle_model_a", -1, "battle_model_a hold negative ids"),  # used to index from the end
    ],
)
def test_bad_sw_ranking_tensors_fail_at_load(tmp_path, name, value, problem):
    folder = _sw(tmp_path / "ck")
    _edit_tensor(folder, name, lambda array: array.flat.__setitem__(0, value))
    with pytest.raises(CheckpointError) as info:
        SWRankingRouter.from_pretrained(folder, embedder=Table())
    assert str(folder) in str(info.value) and problem in str(info.value)


def test_sw_ranking_embedder_width_unknown_at_load_is_checked_on_first_use(tmp_path):
    folder = _sw(tmp_path / "ck")
    assert SWRankingRouter.from_pretrained(folder, embedder=Table()).strong_win_rate(["q"]).shape
    router = SWRankingRouter.from_pretrained(folder, embedder=Constant(3, dim=0))
    with pytest.raises(CheckpointError, match="'constant' gives 3-d embeddings"):
        router.strong_win_rate(["q"])


def _routellm_mf(folder, num_classes, classifier_rows):
    """A RouteLLM-layout mf folder (no model_names: its 64-model table) on 6-d embeddings."""
    from routellm_lc.routers.checkpoints import ROUTELLM_MF_MODEL_NAMES

    rng = np.random.default_rng(0)
    config = {"dim": 4, "num_models": len(ROUTELLM_MF_MODEL_NAMES), "text_dim": 6}
    config |= {"use_proj": True} | ({} if num_classes is None else {"num_classes": num_classes})
    weights = {
        "P.weight": rng.normal(size=(len(ROUTELLM_MF_MODEL_NAMES), 4)),
        "text_proj.0.weight": rng.normal(size=(4, 6)),
        "classifier.0.weight": rng.normal(size=(classifier_rows, 4)),
    }
    save_checkpoint(folder, config, weights, "# t\n")
    return folder


@pytest.mark.parametrize(
    ("num_classes", "rows", "problem"),
    [
        (2, 2, "num_classes is 2; the mf router scores with one classifier output"),
        (0, 1, "num_classes must be at least 1"),
        ("two", 1, "num_classes must be a number"),
        (None, 2, "classifier.0.weight has shape (2, 4), expected (1, 4)"),
        (1, 2, "classifier.0.weight has shape (2, 4), expected (1, 4)"),
    ],
)
def test_mf_num_classes_other_than_one_fails_at_load_naming_field_and_folder(
    tmp_path, num_classes, rows, problem
):
    """RouteLLM's MFModel has one classifier output; num_classes=2 (a 2-row classifier) used
    to load and then fail on scoring with a raw numpy broadcasting ValueError."""
    folder = _routellm_mf(tmp_path / "nc", num_classes, rows)
    with pytest.raises(CheckpointError) as info:
        MatrixFactorizationRouter.from_pretrained(folder, embedder=Constant(6))
    assert str(folder) in str(info.value) and problem in str(info.value)
    assert MatrixFactorizationRouter.from_pretrained(
        _routellm_mf(tmp_path / "ok", 1, 1), embedder=Constant(6)
    ).strong_win_rate(["q"]).shape == (1,)


def test_a_folder_of_another_router_type_is_named_as_such(tmp_path):
    """Loading a sw_ranking folder as mf (or the reverse, or one as bert or causal_llm) says which router
    wrote it (config.json's "router"), not "missing required field(s)"."""
    from routellm_lc.routers import load_router
    from routellm_lc.routers.bert import BertRouter
    from routellm_lc.routers.causal_llm import CausalLLMRouter

    sw = _sw(tmp_path / "sw")
    mf = _mf(tmp_path / "mf")
    _edit_config(mf, router="mf")
    cases = [
        (lambda: load_router("mf", checkpoint=str(sw), embedder=Constant(3)), sw, "sw_ranking"),
        (lambda: MatrixFactorizationRouter.from_pretrained(sw), sw, "sw_ranking"),
        (lambda: SWRankingRouter.from_pretrained(mf), mf, "mf"),
        (lambda: BertRouter.from_pretrained(str(sw)), sw, "sw_ranking"),
        (lambda: CausalLLMRouter.from_pretrained(str(mf)), mf, "mf"),
    ]
    for load, folder, router in cases:
        with pytest.raises(CheckpointError) as info:
            load()
        message = str(info.value)
        assert f"{folder} holds a `{router}` checkpoint" in message, message
        assert f'config.json says "router": "{router}"' in message
        assert f"load_router({router!r}" in message and "missing required" not in message


@pytest.mark.parametrize("router", ["mf", "sw_ranking"])
def test_a_checkpoint_cannot_send_prompts_away_on_its_own(tmp_path, monkeypatch, router):
    """A checkpoint's config.json naming `litellm:huggingface/http://attacker/collect` made
    every scored prompt (and the user's provider key) go to that URL on load."""
    import json

    from routellm_lc.errors import CheckpointError
    from routellm_lc.routers import load_router
    from routellm_lc.routers.checkpoints import BUNDLED_DIR

    folder = tmp_path / "ck"
    if router == "mf":
        shutil.copytree(BUNDLED_DIR / "mf_default", folder)
    else:
        from routellm_lc.routers.sw_ranking import SWRankingRouter

        battles = [
            {"prompt": p, "model_a": "big", "model_b": "small", "winner": w}
            for p, w in (("prove it", "model_a"), ("hi", "model_b"))
        ]
        SWRankingRouter("big", "small").fit(battles).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    monkeypatch.delenv("ROUTELLM_LC_ALLOW_REMOTE_EMBEDDER", raising=False)
    for spec, match in (
        ("litellm:huggingface/http://127.0.0.1:9/collect", "cannot choose where prompts"),
        ("litellm:openai/text-embedding-3-small", "ROUTELLM_LC_ALLOW_REMOTE_EMBEDDER=1"),
    ):
        (folder / "config.json").write_text(json.dumps({**config, "embedder": spec}))
        with pytest.raises(CheckpointError, match=match):
            load_router(router, checkpoint=str(folder))
    # the user's own choice: explicit, or the opt-in for the command line
    explicit = load_router(router, checkpoint=str(folder), embedder="local")
    assert explicit.embedder == "local"
    monkeypatch.setenv("ROUTELLM_LC_ALLOW_REMOTE_EMBEDDER", "1")
    opted = load_router(router, checkpoint=str(folder))
    assert opted.embedder == "litellm:openai/text-embedding-3-small"
    (folder / "config.json").write_text(
        json.dumps({**config, "embedder": "litellm:huggingface/http://127.0.0.1:9/collect"})
    )
    with pytest.raises(CheckpointError, match="cannot choose where prompts"):
        load_router(router, checkpoint=str(folder))


def test_a_revision_cannot_point_a_hub_ref_outside_the_cache(tmp_path):
    """`revision` names a ref in the Hub cache's `refs/` (it can come from someone else's
    RouteLLM config): `../../x` must not rewrite a file outside it."""
    from routellm_lc.routers.checkpoints import _point_ref_at

    repo = tmp_path / "hub" / "models--o--n"
    cached = repo / "snapshots" / "abc123"
    cached.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("newer")
    outside = tmp_path / "hub" / "victim"
    outside.write_text("keep me")
    _point_ref_at(cached, "../../victim")
    assert outside.read_text() == "keep me"
    _point_ref_at(cached, None)  # the branch's own ref is still repointed
    assert (repo / "refs" / "main").read_text() == "abc123"
