#!/usr/bin/env bash
# Run bench/gpu.py on a CUDA machine that has Python, torch and torchaudio but none of the
# project's other dependencies and no network (docs/gpu-benchmark.md says how to prepare .gpu/).
#
#   bash bench/gpu_remote.sh [OUT_DIR] [more bench/gpu.py arguments]
#
# From the repository root or anywhere. Installs the wheels in .gpu/wheels/ into a private
# folder (nothing in the system's Python changes), runs the benchmark on the corpus in
# .gpu/data/, and leaves in OUT_DIR (default $OUT, else bench/gpu-out): results_gpu.json, the log
# gpu_bench.log and each side's profiler trace at batch 10 (*.json.gz).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench/gpu-out}}"
shift || true
python="${PYTHON:-python3}"
site="${ASR_BENCH_SITE:-/tmp/asr-bench-site}"

"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .gpu/wheels/*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

manifests=(.gpu/data/*/train.jsonl)
if [[ ! -f "${manifests[0]}" ]]; then
    echo "error: no .gpu/data/*/train.jsonl (see docs/gpu-benchmark.md)" >&2
    exit 2
fi
data="$(dirname "${manifests[0]}")"
mkdir -p "$out"
"$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
      'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
"$python" bench/gpu.py --data "$data" --out "$out/results_gpu.json" --traces "$out" "$@" 2>&1 |
    tee "$out/gpu_bench.log"
