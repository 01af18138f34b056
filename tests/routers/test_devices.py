"""Where the torch routers (`bert`, `causal_llm`) run: `resolve_device`, the `--device` flags of
the CLI and the server, and, on a machine with a CUDA GPU, training and scoring there.

The GPU tests skip where torch sees no CUDA device (CI has none); they were run on a lent H100
(BENCHMARKS.md, *GPU*). Everything else runs everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_bert import PROMPTS, _tiny_bert
from test_causal_llm import _base_tokenizer, _tiny_llama

from routellm_lc.cli import main
from routellm_lc.errors import DeviceError
from routellm_lc.evals.harness import load_routers
from routellm_lc.routers import resolve_device
from routellm_lc.routers.bert import BertRouter
from routellm_lc.routers.causal_llm import CausalLLMRouter

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (none visible to torch)")
without_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the errors of a machine with no GPU")


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_takes_the_gpu_only_when_there_is_one(no_accelerator, monkeypatch):
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"  # CUDA first


def test_an_absent_or_unknown_device_is_a_clear_error(no_accelerator, monkeypatch):
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="no Apple MPS"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="Unknown device 'gpu0'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(DeviceError, match="sees 1 CUDA GPU"):
        resolve_device("cuda:1")


def test_routers_load_and_train_on_the_device_asked_for(tmp_path, no_accelerator):
    folder = _tiny_bert(tmp_path / "bert")
    router = BertRouter.from_pretrained(folder)  # default "auto": the CPU here
    assert router.device == "auto" and router.model_.device.type == "cpu"
    with pytest.raises(DeviceError, match="sees no CUDA GPU"):  # not a "bad checkpoint" error
        BertRouter.from_pretrained(folder, device="cuda")
    with pytest.raises(DeviceError):  # before any weight is loaded
        BertRouter("gpt4", "mixtral", base_model=folder, device="cuda").fit((["a"], [0]))
    root = tmp_path / "causal"
    base_vocab = len(_base_tokenizer(root / "tok"))
    _tiny_llama(root / "ckpt", base_vocab + 5)
    with pytest.raises(DeviceError, match="sees no CUDA GPU"):
        CausalLLMRouter.from_pretrained(root / "ckpt", tokenizer=root / "tok", device="cuda")
    llm = CausalLLMRouter.from_pretrained(root / "ckpt", tokenizer=root / "tok")
    assert llm.model_.device.type == "cpu" and llm.strong_win_rate(["hello"]).shape == (1,)


def test_load_routers_gives_the_device_only_to_torch_routers(tmp_path):
    calls = []

    def loader(name, checkpoint=None, **kwargs):
        calls.append((name, kwargs))
        return BertRouter() if name == "bert" else object()

    load_routers(["mf", "bert", "sw_ranking", "random"], loader=loader, device="cpu")
    assert calls == [("mf", {}), ("bert", {"device": "cpu"}), ("sw_ranking", {})]
    calls.clear()
    load_routers(["bert"], loader=loader)  # no --device: the router's own default
    assert calls == [("bert", {})]


def _csv(path):
    lines = ["prompt,gpt-4-1106-preview,mistralai/Mixtral-8x7B-Instruct-v0.1"]
    lines += [f"{p},{i % 2 == 0},{i % 3 == 0}" for i, p in enumerate(PROMPTS * 3)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_device_flag(tmp_path, capsys, monkeypatch, no_accelerator):
    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))
    folder = _tiny_bert(tmp_path / "bert")
    argv = ["eval", "--benchmark", str(_csv(tmp_path / "toy.csv")), "--routers", "bert", "mf"]
    argv += ["--checkpoint", f"bert={folder}", "--bootstrap", "0"]
    assert main([*argv, "--device", "cuda", "--output", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "Could not load router(s)" in err and "bert: DeviceError" in err and "mf:" not in err
    assert main([*argv, "--device", "cpu", "--output", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "toy.json").read_text())
    assert set(result["routers"]) == {"bert", "mf"}


def test_train_device_flag_fails_before_loading_data_and_is_noted_for_mf(
    tmp_path, capsys, no_accelerator
):
    argv = ["train", "--router", "bert", "--data-dir", str(tmp_path / "nowhere")]
    assert main([*argv, "--device", "cuda", "--output", str(tmp_path / "ckpt")]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err  # not a data-directory error
    argv = ["train", "--router", "mf", "--data-dir", str(tmp_path / "nowhere")]
    assert main([*argv, "--device", "cuda", "--output", str(tmp_path / "ckpt")]) == 2
    err = capsys.readouterr().err
    assert "--device applies to bert; mf trains on the CPU" in err


def test_serve_and_route_pass_the_device_to_the_shared_router(tmp_path, monkeypatch):
    from routellm_lc import chat_model
    from routellm_lc.server.config import ServerConfig
    from routellm_lc.server.routing import RoutingService

    monkeypatch.setattr(chat_model, "_ROUTERS", {})
    folder = str(_tiny_bert(tmp_path / "bert"))
    settings = tmp_path / "server.yaml"
    settings.write_text(f"routers: [bert]\ncheckpoints: {{bert: {folder}}}\ndevice: cpu\n")
    config = ServerConfig.from_sources(settings)  # `device` is a config-file key
    service = RoutingService.from_config(config)
    service.load()
    try:
        assert service.slots["bert"].router.device == "cpu"
        assert (("bert", folder, "cpu")) in chat_model._ROUTERS
    finally:
        service.close()
    # an mf router ignores the device: one shared instance whatever was asked
    mf = chat_model.shared_router("mf", device="cuda")
    assert chat_model.shared_router("mf") is mf
    assert main(["route", "--router", "bert", "--checkpoint", folder, "--device", "cpu", "hi"]) == 0


def test_bert_fit_shows_progress_per_step(tmp_path, capsys, no_accelerator):
    base = _tiny_bert(tmp_path / "base")
    router = BertRouter("gpt4", "mixtral", base_model=base, epochs=2, batch_size=2)
    router.fit((["prove the theorem", "hello", "hi", "lemma"], [0, 2, 2, 0]), progress=True)
    err = capsys.readouterr().err
    assert "bert fit (cpu)" in err and "4/4" in err and "epoch=2/2" in err


# -- on a CUDA GPU -------------------------------------------------------------------------


@needs_cuda
def test_bert_trains_on_the_gpu_and_its_checkpoint_scores_the_same_on_the_cpu(tmp_path):
    base = _tiny_bert(tmp_path / "base", seed=1)
    hard = ["prove the theorem", "integral of the matrix", "eigenvalue lemma proof", "derivative"]
    easy = ["hello", "hi thanks", "what is the name of the cat", "say hi please"]
    labels = [0] * 4 + [2] * 4
    router = BertRouter("gpt4", "mixtral", base_model=base, epochs=25, batch_size=8, lr=2e-3)
    router.fit((hard + easy, labels))  # device "auto": the GPU
    assert router.model_.device.type == "cuda"
    on_gpu = router.strong_win_rate(hard + easy)
    assert on_gpu[:4].min() > 0.8 and on_gpu[4:].max() < 0.2
    router.save_pretrained(tmp_path / "out")
    on_cpu = BertRouter.from_pretrained(tmp_path / "out", device="cpu")
    assert on_cpu.model_.device.type == "cpu"
    np.testing.assert_allclose(on_cpu.strong_win_rate(hard + easy), on_gpu, atol=1e-4)


@needs_cuda
def test_causal_llm_scores_on_the_gpu_as_on_the_cpu(tmp_path):
    root = tmp_path / "causal"
    base_vocab = len(_base_tokenizer(root / "tok"))
    _tiny_llama(root / "ckpt", base_vocab + 5)
    prompts = ["What is 2 + 2?", "Prove that there are infinitely many primes.", "hello", "a"]
    cpu = CausalLLMRouter.from_pretrained(root / "ckpt", tokenizer=root / "tok", device="cpu")
    gpu = CausalLLMRouter.from_pretrained(root / "ckpt", tokenizer=root / "tok")  # auto
    assert gpu.model_.device.type == "cuda"
    expected = cpu.strong_win_rate(prompts)
    assert expected.std() > 1e-3  # not vacuous: the scores differ across prompts
    # 16-prompt GPU batches mix lengths: right padding must not change a prompt's score
    np.testing.assert_allclose(gpu.strong_win_rate(prompts * 5)[:4], expected, atol=1e-4)


@needs_cuda
def test_eval_cli_scores_bert_on_the_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))
    folder = _tiny_bert(tmp_path / "bert")
    argv = ["eval", "--benchmark", str(_csv(tmp_path / "toy.csv")), "--routers", "bert"]
    argv += ["--checkpoint", f"bert={folder}", "--bootstrap", "0", "--no-cache"]
    assert main([*argv, "--device", "cuda", "--output", str(tmp_path / "gpu")]) == 0
    assert main([*argv, "--device", "cpu", "--output", str(tmp_path / "cpu")]) == 0
    gpu = json.loads((tmp_path / "gpu" / "toy.json").read_text())["routers"]["bert"]
    cpu = json.loads((tmp_path / "cpu" / "toy.json").read_text())["routers"]["bert"]
    assert gpu["apgr"] == pytest.approx(cpu["apgr"], abs=1e-6)


@needs_cuda
@pytest.mark.data
def test_train_cli_fine_tunes_bert_on_the_gpu_from_the_real_data(tmp_path, data_dir, capsys):
    out = tmp_path / "bert_ckpt"
    argv = ["train", "--router", "bert", "--data-dir", str(data_dir), "--limit", "300"]
    assert main([*argv, "--epochs", "1", "--device", "cuda", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["device"].startswith("cuda:0 (")
    card = (out / "README.md").read_text()
    assert "Fine-tuned on `cuda:0 (" in card and "--device" not in card
    router = BertRouter.from_pretrained(out, device="cpu")
    scores = router.strong_win_rate(["Prove that there are infinitely many primes.", "hi"])
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
