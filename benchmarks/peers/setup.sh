#!/usr/bin/env bash
# Creates the peers' virtual environments used by benchmarks/bench_peers.py (outside the repository, in
# $PEER_VENVS, default ~/.cache/pyterrier_lateint/peer-venvs).
#   bash benchmarks/peers/setup.sh            # both peers
#   PEER_VENVS=/some/dir bash benchmarks/peers/setup.sh
# Tested on Linux x86_64, Python 3.11, CPU only (2 cores). Downloads ~3 GB (fast-plaid's CUDA torch build).
set -euo pipefail
VENVS="${PEER_VENVS:-$HOME/.cache/pyterrier_lateint/peer-venvs}"
mkdir -p "$VENVS"

# 1. fast-plaid (the engine of PyLate's PLAID index). Its version suffix names the torch it is built against
#    (1.7.0.2110 = torch 2.11.0), so pin the pair. torch 2.11.0 from PyPI is a CUDA build; it runs on CPU.
#    (On a machine whose pip config caps torch, add --isolated or PIP_CONFIG_FILE=/dev/null; 2.11.0 is under
#    this machine's torch<=2.14.1 cap, so it was not needed here.)
python3 -m venv "$VENVS/fastplaid"
"$VENVS/fastplaid/bin/pip" install --upgrade pip
"$VENVS/fastplaid/bin/pip" install "fast-plaid==1.7.0.2110" "torch==2.11.0" numpy

# 2. Stanford ColBERT / PLAID (colbert-ai 0.2.22). CPU torch (a local CPU wheel where the machine's pip config
#    provides one; elsewhere use
#    --index-url https://download.pytorch.org/whl/cpu), faiss-cpu for k-means, transformers < 4.45 (colbert-ai
#    0.2.22 predates transformers 5), ninja + gcc to JIT-compile its C++ CPU kernels (segmented_maxsim,
#    segmented_lookup, filter_pids, decompress_residuals) into ~/.cache/torch_extensions at the first search.
python3 -m venv "$VENVS/plaid"
"$VENVS/plaid/bin/pip" install --upgrade pip
"$VENVS/plaid/bin/pip" install "torch==2.13.0+cpu" "colbert-ai==0.2.22" faiss-cpu "transformers<4.45" numpy \
    ninja setuptools

# 3. pyterrier_colbert: not installable here. It is not on PyPI; its requirements.txt pins
#    git+https://github.com/cmacdonald/ColBERT.git@v0.2 (GitHub unreachable from this machine) and its dense
#    retrieval uses faiss-gpu (CUDA), with Java/Terrier through python-terrier.
