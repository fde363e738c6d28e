#!/usr/bin/env bash
# Run the main job on the embedded default data (sets up .venv first). Extra arguments go to `vlpretrain demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${VLPRETRAIN_VENV:-.venv}/bin/vlpretrain" demo "$@"
