#!/usr/bin/env bash
# Set up mlbench on a fresh machine: system packages (Debian, when run as root), a virtual environment
# in .venv, and mlbench with its dependencies. Safe to run again: it only installs what is missing.
#   scripts/setup.sh          what `mlbench run` needs (Debian: Fashion-MNIST for ResNet mini, Python's
#                             documentation prose and WordNet for BERT mini, espeak-ng and flite
#                             voices for RNN-T mini)
#   scripts/setup.sh --test   plus what the tests need (SLURM and munge for the cluster tests, Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

packages="dataset-fashion-mnist python3.11-doc wordnet-base espeak-ng flite"
if [ "${1:-}" = "--test" ]; then
  packages="$packages slurm-wlm munge chromium"
fi

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=""
  for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
else
  echo "setup: not root or no apt-get; skipping system packages ($packages)." \
       "mlbench downloads Fashion-MNIST into ~/.cache/mlbench when online."
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# pip's quiet mode still warns about this machine's absent local index folders; keep real errors only.
pip_install() { .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
stamp=.venv/.mlbench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/cpu.txt -nt "$stamp" ] || [ requirements/recsys-cpu.txt -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  pip_install --upgrade pip
  pip_install -r requirements/cpu.txt
  pip_install -e ".[onnx,detection,language,speech,test]"
  # DLRM's optional TorchRec engine (its tests skip without it); see requirements/recsys-cpu.txt.
  pip_install -r requirements/recsys-cpu.txt
  pip_install --no-deps "torchrec==1.9.2"
  pip_install --no-deps "torchsnapshot==0.1.0"  # tests only: writes snapshots as MLPerf's DLRM weights are
  touch "$stamp"
fi
echo "setup: done (.venv/bin/mlbench)"
