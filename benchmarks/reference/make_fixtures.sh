#!/usr/bin/env bash
# Rebuilds tests/data/reference: each reference library writes and encodes its own tiny checkpoint, in its own
# virtual environment (created by benchmarks/peers/setup.sh under $PEER_VENVS). CPU only, about a minute.
#   bash benchmarks/reference/make_fixtures.sh [OUT_DIR]       # default tests/data/reference
# PYTHON: pyterrier-lateint's interpreter (default .venv/bin/python). HF_HUB_OFFLINE=1: nothing is downloaded
# (ColBERT v0.2 loads 'bert-base-uncased': the stage runs in a folder holding a local one).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-tests/data/reference}"
VENVS="${PEER_VENVS:-$HOME/.cache/pyterrier_lateint/peer-venvs}"
PYTHON="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SCRIPT=benchmarks/reference/make_fixtures.py
rm -rf "$OUT"
"$PYTHON" "$SCRIPT" base "$OUT"
"$VENVS/plaid/bin/python" "$SCRIPT" colbert-ai "$OUT"
"$VENVS/pylate/bin/python" "$SCRIPT" pylate "$OUT"
"$VENVS/pyterrier_colbert/bin/python" "$SCRIPT" colbert-v0.2 "$OUT"
rm -rf "$OUT/_build"
cp benchmarks/reference/FIXTURES.md "$OUT/README.md"
du -ah "$OUT" | sort -k2
