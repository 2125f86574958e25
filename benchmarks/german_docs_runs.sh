#!/bin/bash
# benchmarks/results/german_docs.md: SmolLM2 -> German (fvt, 20 embeddings-only steps) on the
# Bible alone vs the Bible plus the Debian documentation corpus, each scored on both domains'
# held-out parts, then SR-B and the packaged bible_continuation task on the three models.
# Needs `make german-docs` first (artifacts/german_docs/{train,test}.txt).
# STEPS=200 benchmarks/german_docs_runs.sh: the same two runs with 200 steps (models in
# models/<run>_200), without the SR-B/lm-eval call (measured at 20 steps).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
OUT=artifacts/german_docs
STEPS=${STEPS:-20}
SUFFIX=$([ "$STEPS" = 20 ] && echo "" || echo "_$STEPS")
COMMON=(--source-model smollm2 --target-language de --strategy fvt --train-steps "$STEPS"
        --eval-file "docs=$OUT/test.txt" --no-prefect)
for run in bible bible_docs; do  # the shared settings plus each run's own output folder
  { cat benchmarks/german_docs.yaml; echo "output_dir: $OUT/models/$run$SUFFIX"; } > "$OUT/$run$SUFFIX.yaml"
done
.venv/bin/vocab-transfer adapt --config "$OUT/bible$SUFFIX.yaml" "${COMMON[@]}"
.venv/bin/vocab-transfer adapt --config "$OUT/bible_docs$SUFFIX.yaml" "${COMMON[@]}" \
  --target-bible e --target-bible s --target-file "$OUT/train.txt"
[ "$STEPS" = 20 ] || exit 0
.venv/bin/vocab-transfer evaluate smollm2 "$OUT/models/bible/smollm2-de-fvt" "$OUT/models/bible_docs/smollm2-de-fvt" \
  --task srb --target-bible e --lm-eval-task bible_continuation --lm-eval-limit 200 --json "$OUT/srb.json"
