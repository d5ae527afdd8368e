#!/usr/bin/env bash
# Container entrypoint for a GPU pod or serverless worker with a volume-cli network volume.
#
#   PROJECT=my-project ./start.sh python -u handler.py
#
# 1. `volume-cli models ensure` checks the project's models against their
#    manifests on the volume: when everything is there it makes no network
#    request and takes well under a second; otherwise it downloads what is
#    missing (mirrors: HF_ENDPOINT / MODELSCOPE_ENDPOINT). Set
#    DOWNLOAD_MODELS_ON_STARTUP=false to never download at start-up.
# 2. The hub clients are pointed at the volume's caches and told to stay
#    offline, so the worker loads models with no download.
# 3. exec replaces this shell with the worker, so it receives signals directly.
set -euo pipefail

: "${PROJECT:?set PROJECT to the volume-cli project name}"

if [[ -z "${VOLUME_CLI_ROOT:-}" ]]; then
    for candidate in /runpod-volume /workspace; do
        if [[ -d "$candidate" ]]; then VOLUME_CLI_ROOT="$candidate"; break; fi
    done
fi

if [[ -n "${VOLUME_CLI_ROOT:-}" ]]; then
    export VOLUME_CLI_ROOT
    # The volume's caches win over any the base image set: models were ensured there.
    export HF_HOME="$VOLUME_CLI_ROOT/models/huggingface"
    export HF_HUB_CACHE="$HF_HOME/hub"
    export MODELSCOPE_CACHE="$VOLUME_CLI_ROOT/models/modelscope"
    export TORCH_HOME="$VOLUME_CLI_ROOT/models/torch"
fi
# What libraries write at run time stays on the container's local disk, not in the shared
# volume (the list is volume_cli.runtime.LOCAL_CACHES); bytecode is never written there either.
LOCAL_CACHE="${VOLUME_CLI_LOCAL_CACHE:-/tmp/volume-cli-cache}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$LOCAL_CACHE/numba}"
export HF_MODULES_CACHE="${HF_MODULES_CACHE:-$LOCAL_CACHE/hf-modules}"
export HF_DATASETS_CACHE="${HF_DATASETS_CACHE:-$LOCAL_CACHE/hf-datasets}"
export HF_ASSETS_CACHE="${HF_ASSETS_CACHE:-$LOCAL_CACHE/hf-assets}"
export HF_XET_CACHE="${HF_XET_CACHE:-$LOCAL_CACHE/hf-xet}"
export MODELSCOPE_INDEX_FILE="${MODELSCOPE_INDEX_FILE:-$LOCAL_CACHE/modelscope/ast_indexer}"
export HF_TOKEN_PATH="${HF_TOKEN_PATH:-~/.cache/huggingface/token}"
export PYTHONDONTWRITEBYTECODE=1

# MODELS_REQUIRED=false starts the worker even when models could not be made complete.
# Its report goes to stderr (the container log); stdout belongs to the worker.
if ! volume-cli models ensure --project "$PROJECT" >&2; then
    if [[ "${MODELS_REQUIRED:-true}" != "false" ]]; then
        echo "start.sh: models for $PROJECT are not complete; not starting the worker" >&2
        exit 1
    fi
    echo "start.sh: models for $PROJECT are not complete; starting anyway (MODELS_REQUIRED=false)" >&2
fi

# Everything the worker needs is on the volume now: keep the clients from calling the hub.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"

if [[ $# -eq 0 ]]; then
    echo "start.sh: no worker command given (usage: start.sh COMMAND [ARGS...])" >&2
    exit 2
fi
exec "$@"
