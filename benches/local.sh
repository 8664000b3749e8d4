#!/usr/bin/env bash
# local.sh — the local pool's overhead: tokens/s and time to first token of one generation model
# run directly on a thread vs served by the gateway (gateway/benches/local_generation.rs).
#
#   bash benches/local.sh            # ROUNDS=10 by default
#
# Makes the bench model (4 layers, 8 heads × 64, MLP 2048: ~52 MB, a few ms per token) with
# scripts/make-tiny-lm.py into target/onnx/bench-lm (needs python3 with onnx, onnxruntime,
# tokenizers: installed into .venv-bench when missing), fetches ONNX Runtime, runs the bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/fetch-models.sh >/dev/null
if [[ ! -f target/onnx/bench-lm/model.onnx ]]; then
    if ! python3 -c 'import onnx, onnxruntime, tokenizers' 2>/dev/null; then
        [[ -x .venv-bench/bin/python ]] || python3 -m venv .venv-bench
        .venv-bench/bin/pip install -q onnx==1.23.2 onnxruntime==1.31.1 tokenizers==0.23.3 numpy
        py=.venv-bench/bin/python
    else
        py=python3
    fi
    "$py" scripts/make-tiny-lm.py --out target/onnx/bench-lm \
        --layers 4 --heads 8 --head-dim 64 --mlp 2048
fi
SWITCHYARD_BENCH_LM="$PWD/target/onnx/bench-lm/model.onnx" \
    cargo bench -q -p switchyard --bench local_generation
