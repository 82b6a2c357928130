#!/usr/bin/env bash
# Behaviour-BERT throughput on a GPU machine: pretraining and fine-tuning samples/s, scoring
# customers/s at 1,000,000 synthetic customers. Runs mlcore only (no Django, no database, no
# downloaded weights), so it needs just PyTorch, transformers, safetensors, numpy and
# scikit-learn. Results go to $OUT (or ./benchmarks-out) as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv > "$OUT/gpu.csv" 2>&1 || true
"$PY" benchmarks/behaviour_bert.py --customers 1000000 --train-rows 50000 --train-seconds 60 \
    --chunk 50000 --json "$OUT/behaviour_bert_gpu.json"
