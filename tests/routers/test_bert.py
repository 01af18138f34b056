"""bert router: RouteLLM's published layout and label order, scoring maths against the model's
own logits, fine-tuning on a separable toy task, checkpoint round trips, errors.

The models are tiny BERTs (2 layers, hidden 32, a 40-word WordPiece vocabulary) built here and
saved in exactly the layout of `routellm/bert_gpt4_augmented`, so they load offline through the
same code path as the published checkpoint.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from routellm_lc.errors import CheckpointError
from routellm_lc.routers import load_router
from routellm_lc.routers.bert import BertRouter


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Busy 2-core CI machines stall torch's 2 intra-op threads (measured 10-60x slower)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


WORDS = (
    "prove theorem integral derivative matrix eigenvalue proof lemma hello hi thanks "
    "cat dog weather name what is the a of and please write poem hard easy say"
).split()


def _tiny_bert(folder, *, num_labels=3, seed=0):
    """A randomly initialised BertForSequenceClassification + WordPiece tokenizer, saved the
    way RouteLLM's bert_gpt4_augmented is (config.json, model.safetensors, tokenizer files)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    tokenizer.model_max_length = 64
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        initializer_range=0.2,  # livelier random features than BERT's 0.02
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    torch.nn.init.normal_(model.classifier.weight, std=1.0)  # spread the label probabilities
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _routellm_score(folder, prompt):
    """RouteLLM's BERTRouter.calculate_strong_win_rate, one prompt at a time."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=3)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    inputs = tokenizer(prompt, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        logits = model(**inputs).logits.numpy()[0].astype(np.float64)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    return 1 - (probs[1] + probs[2])  # 1 − (p_tie + p_weak)


PROMPTS = ["prove the theorem", "hello", "write a poem of the cat and dog please", "what is hard"]


def test_published_layout_scores_one_minus_tie_and_weak_probability(tmp_path):
    folder = _tiny_bert(tmp_path / "routellm" / "bert_gpt4_augmented")
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= {
        p.name for p in folder.iterdir()
    }
    router = BertRouter.from_pretrained(folder)
    scores = router.strong_win_rate(PROMPTS)  # one padded batch
    expected = [_routellm_score(folder, p) for p in PROMPTS]
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert scores.std() > 1e-3  # the check is not vacuous: scores differ across prompts
    probs = router.label_probabilities(PROMPTS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(scores, probs[:, 0])  # = p(strong wins) for 3 labels
    # RouteLLM's folder has no router_config.json: its model pair is recorded as the default.
    assert router.strong_model == "gpt-4-1106-preview" and router.cache_key.startswith("bert:")


def test_loads_by_hub_id_from_the_local_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    repo = cache / "models--routellm--bert_gpt4_augmented"
    revision = "b" * 40
    _tiny_bert(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    router = load_router("bert")  # default checkpoint: routellm/bert_gpt4_augmented
    expected = _routellm_score(repo / "snapshots" / revision, "prove the theorem")
    assert router.strong_win_rate(["prove the theorem"])[0] == pytest.approx(expected, abs=1e-6)


def test_battles_become_routellm_labels():
    router = BertRouter(strong_model={"gpt4", "claude"}, weak_model="mixtral")
    battles = [
        {"prompt": "a", "model_a": "gpt4", "model_b": "mixtral", "winner": "model_a"},
        {"prompt": "b", "model_a": "mixtral", "model_b": "claude", "winner": "model_a"},
        {"prompt": "c", "model_a": "mixtral", "model_b": "gpt4", "winner": "tie (bothbad)"},
        {"prompt": "d", "model_a": "gpt4", "model_b": "claude", "winner": "model_a"},  # skipped
        {
            "prompt": "e",
            "model_a": "claude",
            "model_b": "mixtral",
            "winner": "model_b",
            "weight": 0.3,
        },
    ]
    prompts, labels, weights = router.battle_labels(battles)
    assert prompts == ["a", "b", "c", "e"]
    assert labels.tolist() == [0, 2, 1, 2]
    assert weights.tolist() == [1.0, 1.0, 1.0, 0.3]


def test_fit_learns_a_separable_task_and_round_trips(tmp_path):
    base = _tiny_bert(tmp_path / "base", seed=1)
    hard = ["prove the theorem", "integral of the matrix", "eigenvalue lemma proof", "derivative"]
    easy = ["hello", "hi thanks", "what is the name of the cat", "say hi please"]
    battles = [
        {"prompt": p, "model_a": "gpt4", "model_b": "mixtral", "winner": "model_a"} for p in hard
    ] + [{"prompt": p, "model_a": "mixtral", "model_b": "gpt4", "winner": "model_a"} for p in easy]
    router = BertRouter("gpt4", "mixtral", base_model=base, epochs=25, batch_size=8, lr=2e-3)
    router.fit(battles)
    scores = router.strong_win_rate(hard + easy)
    assert scores[:4].min() > 0.8 and scores[4:].max() < 0.2

    router.save_pretrained(tmp_path / "out")
    settings = json.loads((tmp_path / "out" / "router_config.json").read_text())
    assert settings["labels"] == ["strong_wins", "tie", "weak_wins"]
    assert settings["strong_model"] == "gpt4" and (tmp_path / "out" / "README.md").exists()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "strong_wins", "1": "tie", "2": "weak_wins"}
    again = load_router("bert", checkpoint=str(tmp_path / "out"))
    assert again.weak_model == "mixtral"
    np.testing.assert_allclose(again.strong_win_rate(hard + easy), scores, atol=1e-6)
    assert again.cache_key is not None
    again.epochs = 1
    again.fit(battles[:2])  # new weights: the checkpoint's cached scores no longer apply
    assert again.cache_key is None


def test_fit_on_prompts_and_labels(tmp_path):
    base = _tiny_bert(tmp_path / "base", seed=2)
    prompts = ["prove the theorem", "hello", "integral proof", "hi thanks"] * 2
    labels = [0, 2, 0, 2] * 2
    router = BertRouter(base_model=base, epochs=20, batch_size=8, lr=2e-3)
    scores = router.fit((prompts, labels)).strong_win_rate(prompts[:4])
    assert scores[[0, 2]].min() > 0.7 and scores[[1, 3]].max() < 0.3
    with pytest.raises(ValueError, match="labels must be 0"):
        BertRouter(base_model=base).fit((["hello"], [3]))


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        BertRouter.from_pretrained(str(tmp_path / "nowhere"))
    folder = _tiny_bert(tmp_path / "no_tokenizer")
    for name in ("vocab.txt", "tokenizer.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"no_tokenizer is incomplete: missing tokenizer"):
        BertRouter.from_pretrained(folder)
    folder = _tiny_bert(tmp_path / "two_labels", num_labels=2)
    with pytest.raises(CheckpointError, match="does not hold a 3-label classifier"):
        BertRouter.from_pretrained(folder)  # transformers 5 writes no id2label for 2 labels
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="declares 2 labels"):
        BertRouter.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model weights"):
        BertRouter.from_pretrained(folder)


def test_score_cache_key_follows_the_token_limit(tmp_path):
    """A shorter `max_length` truncates long prompts and changes their scores, so the eval
    harness must not reuse scores cached at another limit."""
    folder = _tiny_bert(tmp_path / "bert")
    full, short = (
        BertRouter.from_pretrained(folder),
        BertRouter.from_pretrained(folder, max_length=4),
    )
    assert full.cache_key == BertRouter.from_pretrained(folder).cache_key
    assert full.cache_key != short.cache_key
    long_prompt = ["a long prompt " * 20]
    assert full.strong_win_rate(long_prompt)[0] != pytest.approx(
        short.strong_win_rate(long_prompt)[0]
    )


def test_very_long_prompts_score_exactly_as_tokenising_them_whole(tmp_path):
    """A prompt far past the token window is tokenised from a whitespace-ended prefix when
    that prefix fills the window (megabytes used to be tokenised to keep 64 tokens here); the
    scores are the full text's. A prefix that does not fill it falls back to the whole text."""
    from transformers import AutoTokenizer

    folder = _tiny_bert(tmp_path / "bert")
    router = BertRouter.from_pretrained(folder)
    long_words = " ".join(WORDS[i % len(WORDS)] for i in range(5_000))
    spaceless = "x" * 5_000 + " " + " ".join(WORDS)  # no whitespace inside the limit
    texts = [long_words, spaceless, PROMPTS[0]]
    heads = router._heads(texts)
    assert len(heads[0]) < len(long_words) and heads[1] == spaceless and heads[2] == PROMPTS[0]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    limit = router._token_limit()
    for text, head in zip(texts, heads, strict=True):
        full = tokenizer(text, truncation=True, max_length=limit)["input_ids"]
        assert tokenizer(head, truncation=True, max_length=limit)["input_ids"] == full
    expected = [_routellm_score(folder, t) for t in texts]
    np.testing.assert_allclose(router.strong_win_rate(texts), expected, atol=1e-6)


class _Payload:
    def __reduce__(self):
        import os

        return (os.getenv, ("ROUTELLM_LC_PICKLE_RAN",))  # harmless: proves nothing runs


def test_a_pickled_weights_file_is_refused_as_a_bad_checkpoint(tmp_path):
    """A `pytorch_model.bin` is a pickle: torch's weights-only loading refuses one that holds
    code, and the refusal is a CheckpointError naming the folder, not a raw traceback."""
    import pickle

    folder = _tiny_bert(tmp_path / "evil")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": _Payload()}))
    with pytest.raises(CheckpointError, match="Could not load the bert checkpoint"):
        load_router("bert", checkpoint=str(folder))
