#!/usr/bin/env bash
# The one prepared GPU check (run on a lent GPU machine from the repository root, $OUT = output folder).
# Needs: .gpu/whl (captum, ir-measures, pytrec-eval-terrier wheels for the machine's Python),
# .gpu/minilm (all-MiniLM-L6-v2, fp16 on disk, loaded as fp32), .gpu/data/cranfield.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD REXBENCH_DATA=$PWD/.gpu/data REXBENCH_MINILM=$PWD/.gpu/minilm REXBENCH_HOME=/tmp/rxh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
python3 -c "import torch, transformers, captum; print(torch.__version__, transformers.__version__, captum.__version__)"
# `bash benchmarks/gpu_checks.sh scaling` runs only the issue-12 checks (fits one 600 s call); default: all.
MODE=${1:-all}
if [ "$MODE" = all ]; then
echo "== floors (cuda)"
timeout 200 python3 -m suites.cli floors --device cuda --out "$OUT/floors_cuda.json" --pairs 3 2>&1 | tail -20
echo "== end to end: quick suite on cuda (2 queries)"
timeout 120 python3 -m suites.cli run suites/quick.toml --device cuda --limit 2 --out /tmp/quick_cuda --quiet 2>&1 | tail -3
python3 -m suites.cli report /tmp/quick_cuda --out "$OUT/quick_cuda_RESULTS.md" 2>&1 | tail -1
cp /tmp/quick_cuda/summary.csv "$OUT/quick_cuda_summary.csv" 2>/dev/null
echo "== benchmarks (cuda)"
REXBENCH_BENCH_DEVICE=cuda timeout 200 python3 -m pytest tests/benchmarks -q -o addopts="" -p no:cacheprovider \
  --benchmark-only --benchmark-json="$OUT/bench_cuda.json" --benchmark-columns=median,rounds 2>&1 | tail -15
fi
echo "== scaling (cuda): cross-pair batching on the cross-encoder; full-size transformer shards (issue 12)"
REXBENCH_BENCH_DEVICE=cuda timeout 150 python3 -m pytest tests/benchmarks/test_bench_scale.py -k cross_pair -q \
  -o addopts="" -p no:cacheprovider --benchmark-only --benchmark-json="$OUT/scaling_cuda.json" 2>&1 | tail -6
timeout 400 python3 -m suites.cli run suites/cranfield_gpu.toml --device cuda --limit 1 --out /tmp/tr_cuda --quiet \
  --overwrite 2>&1 | tail -3
python3 -m suites.report.scaling /tmp/tr_cuda --out "$OUT/scaling_transformers_cuda.json"
echo "== done"
