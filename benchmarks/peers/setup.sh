#!/usr/bin/env bash
# Creates the peers' and reference libraries' virtual environments used by benchmarks/bench_peers.py,
# benchmarks/bench_reference.py and benchmarks/reference/make_fixtures.sh (outside the repository, in
# $PEER_VENVS, default ~/.cache/pyterrier_lateint/peer-venvs).
#   bash benchmarks/peers/setup.sh                        # every environment, sources from GitHub
#   bash benchmarks/peers/setup.sh /path/to/mirrors       # git sources from local mirrors: MIRRORS/OWNER+NAME/repo
#   PEERS="pylate pyterrier_colbert" bash benchmarks/peers/setup.sh   # only some
#   PEER_VENVS=/some/dir bash benchmarks/peers/setup.sh
# (GIT_MIRRORS=/path/to/mirrors works as the argument does.) Tested on Linux x86_64, Python 3.11, CPU only
# (2 cores). Downloads ~3 GB (fast-plaid's CUDA torch build); the others use CPU torch.
set -euo pipefail
VENVS="${PEER_VENVS:-$HOME/.cache/pyterrier_lateint/peer-venvs}"
MIRRORS="${1:-${GIT_MIRRORS:-}}"
PEERS="${PEERS:-fastplaid plaid pylate pyterrier_colbert}"
mkdir -p "$VENVS"

git_source() {  # git_source OWNER NAME REF -> a pip requirement for that repository at REF
    if [ -n "$MIRRORS" ]; then
        echo "git+file://$(cd "$MIRRORS" && pwd)/$1+$2/repo@$3"
    else
        echo "git+https://github.com/$1/$2.git@$3"
    fi
}
wanted() { [[ " $PEERS " == *" $1 "* ]]; }

# 1. fast-plaid (the engine of PyLate's PLAID index). Its version suffix names the torch it is built against
#    (1.7.0.2110 = torch 2.11.0), so pin the pair. torch 2.11.0 from PyPI is a CUDA build; it runs on CPU.
#    (On a machine whose pip config caps torch, add --isolated or PIP_CONFIG_FILE=/dev/null; 2.11.0 is under
#    this machine's torch<=2.14.1 cap, so it was not needed here.)
if wanted fastplaid; then
    python3 -m venv "$VENVS/fastplaid"
    "$VENVS/fastplaid/bin/pip" install --upgrade pip
    "$VENVS/fastplaid/bin/pip" install "fast-plaid==1.7.0.2110" "torch==2.11.0" numpy
fi

# 2. Stanford ColBERT / PLAID (colbert-ai 0.2.22). CPU torch (a local CPU wheel where the machine's pip config
#    provides one; elsewhere use
#    --index-url https://download.pytorch.org/whl/cpu), faiss-cpu for k-means, transformers < 4.45 (colbert-ai
#    0.2.22 predates transformers 5), ninja + gcc to JIT-compile its C++ CPU kernels (segmented_maxsim,
#    segmented_lookup, filter_pids, decompress_residuals) into ~/.cache/torch_extensions at the first search.
if wanted plaid; then
    python3 -m venv "$VENVS/plaid"
    "$VENVS/plaid/bin/pip" install --upgrade pip
    "$VENVS/plaid/bin/pip" install "torch==2.13.0+cpu" "colbert-ai==0.2.22" faiss-cpu "transformers<4.45" numpy \
        ninja setuptools
fi

# 3. PyLate 1.6.0 (reference for the pylate layout and for what our save_pretrained writes). Its metadata pins
#    fast-plaid<=1.4.6.2110, whose wheels need torch 2.11 (a CUDA build of several GB); encoding and scoring
#    (pylate.models, pylate.scores, pylate.rank) never import fast_plaid, so PyLate is installed without
#    dependencies, its other dependencies at the versions its metadata names, with CPU torch.
if wanted pylate; then
    python3 -m venv "$VENVS/pylate"
    "$VENVS/pylate/bin/pip" install --upgrade pip
    "$VENVS/pylate/bin/pip" install "torch==2.13.0" "sentence-transformers==5.3.0" "transformers>=4.41,<=5.3.0" \
        "datasets>=2.20" "accelerate>=0.31" "pandas>=2.2.1" "ujson==5.12.0" "fastkmeans==0.5.0" numpy scipy
    "$VENVS/pylate/bin/pip" install --no-deps "pylate==1.6.0"
fi

# 4. pyterrier_colbert (main) on ColBERT v0.2 (cmacdonald/ColBERT, tag v0.2): the reference for v1 .dnn files
#    and for ColBERTFactory. Neither is on PyPI. ColBERT v0.2 pins transformers==3.0.2, which has no wheels for
#    Python 3.11 (tokenizers 0.8 needs a Rust build); pyterrier_colbert's CI also tests transformers>=4, so both
#    go in without dependencies on transformers 4.44.2 (the newest before 5, as colbert-ai). python-terrier
#    0.13.2 (the 0.x API pyterrier_colbert targets), faiss-cpu instead of faiss-gpu. ColBERT v0.2's mlflow and
#    tensorboard imports (training logs) are stubbed by the scripts that use it; Java/Terrier is not needed for
#    encoding and scoring (pt.started() is patched).
if wanted pyterrier_colbert; then
    python3 -m venv "$VENVS/pyterrier_colbert"
    "$VENVS/pyterrier_colbert/bin/pip" install --upgrade pip
    "$VENVS/pyterrier_colbert/bin/pip" install "torch==2.13.0" "transformers==4.44.2" "python-terrier==0.13.2" \
        ujson numpy pandas scikit-learn more-itertools faiss-cpu matplotlib
    "$VENVS/pyterrier_colbert/bin/pip" install --no-deps "$(git_source cmacdonald ColBERT v0.2)" \
        "$(git_source terrierteam pyterrier_colbert ba5c86c0bc8da450dee361140541f35b5349a492)"
fi
