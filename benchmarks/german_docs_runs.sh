#!/bin/bash
# benchmarks/results/german_docs.md: SmolLM2 -> German (fvt, 20 embeddings-only steps) on the
# Bible alone vs the Bible plus the Debian documentation corpus, each scored on both domains'
# held-out parts, then SR-B and the packaged bible_continuation task on the three models.
# Needs `make german-docs` first (artifacts/german_docs/{train,test}.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
OUT=artifacts/german_docs
COMMON=(--source-model smollm2 --target-language de --strategy fvt --train-steps 20
        --eval-file "docs=$OUT/test.txt" --no-prefect)
for run in bible bible_docs; do  # the shared settings plus each run's own output folder
  { cat benchmarks/german_docs.yaml; echo "output_dir: $OUT/models/$run"; } > "$OUT/$run.yaml"
done
.venv/bin/vocab-transfer adapt --config "$OUT/bible.yaml" "${COMMON[@]}"
.venv/bin/vocab-transfer adapt --config "$OUT/bible_docs.yaml" "${COMMON[@]}" \
  --target-bible e --target-bible s --target-file "$OUT/train.txt"
.venv/bin/vocab-transfer evaluate smollm2 "$OUT/models/bible/smollm2-de-fvt" "$OUT/models/bible_docs/smollm2-de-fvt" \
  --task srb --target-bible e --lm-eval-task bible_continuation --lm-eval-limit 200 --json "$OUT/srb.json"
