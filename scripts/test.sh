#!/usr/bin/env bash
# Run the test suite on the CPU (sets up .venv first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${VLPRETRAIN_VENV:-.venv}/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
