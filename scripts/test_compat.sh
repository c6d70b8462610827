#!/usr/bin/env bash
# The whole test suite against another PyTorch release, in its own virtual environment (.venv-torch<VERSION>),
# leaving .venv alone. GPU machines often bring an older torch than requirements/cpu.txt pins; run this with
# theirs before trusting a GPU run (torch 2.11.0 / torchvision 0.26.0 / torchaudio 2.11.0 on the lent H100/H200).
#   scripts/test_compat.sh TORCH TORCHVISION TORCHAUDIO [pytest args]
#   scripts/test_compat.sh 2.11.0 0.26.0 2.11.0               (parallel part, then the serial part, as make test)
# The PyPI builds of torch bring their CUDA libraries (gigabytes where no local cache has them). TorchRec is not
# installed: its tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then sed -n 2,8p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; fi
TV=$1; VV=$2; AV=$3; shift 3
for v in "$TV" "$VV" "$AV"; do  # a version names a folder (.venv-torch<VERSION>): digits and dots only
  [[ "$v" =~ ^[0-9]+(\.[0-9]+)*$ ]] || { echo "test_compat: invalid version '$v': give release numbers," \
    "e.g. 2.11.0 0.26.0 2.11.0" >&2; exit 2; }
done
VENV=.venv-torch$TV
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pins=$(mktemp); trap 'rm -f "$pins"' EXIT
printf 'torch==%s\ntorchvision==%s\ntorchaudio==%s\n' "$TV" "$VV" "$AV" > "$pins"
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
quiet "$VENV/bin/python" -m pip install -q -c "$pins" "torch==$TV" "torchvision==$VV" "torchaudio==$AV"
quiet "$VENV/bin/python" -m pip install -q -c "$pins" -e ".[onnx,detection,language,speech,test]"
"$VENV/bin/python" -c "import torch, torchvision, torchaudio; print('torch', torch.__version__, 'torchvision',
      torchvision.__version__, 'torchaudio', torchaudio.__version__)"
if [ $# -gt 0 ]; then exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"; fi
a=0; b=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -n 2 --dist worksteal -m "not serial" || a=$?
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -m serial || b=$?
[ $a = 0 ] && [ $b = 0 ]
