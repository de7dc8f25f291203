#!/usr/bin/env bash
# Screenshots of what a user sees in the MLflow UI after a small sweep and a leaderboard (not run in CI).
#   scripts/ui_screenshots.sh [OUT_DIR]      (default: docs/ui)
# Needs chromium (apt-get install -y chromium) and the workplace tool mlflow-ui-shot (or MLFLOW_UI_SHOT=path).
# Fits 3 estimators x 3 seeds at n=300 in a temporary folder: about a minute on an idle laptop.
# UI_WORKDIR=<folder>: use (or fill, on first use) that folder's mlruns/ instead, e.g. to retake pictures.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$repo/docs/ui}" && cd "${1:-$repo/docs/ui}" && pwd)
shot=${MLFLOW_UI_SHOT:-/work/shared/tools/mlflow-ui-shot}
if [[ -n ${UI_WORKDIR:-} ]]; then work=$UI_WORKDIR; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
cd "$work"
if [[ ! -f mlruns/mlflow.db ]]; then
  hte-bench -m estimator=interaction_ols,t_learner,zero_effect n_seeds=3 data.n=300 data.n_test=200 \
    analyses.subgroups=false outcome_model=lasso >/dev/null
  hte-bench-leaderboard >/dev/null
fi
uri="sqlite:///$work/mlruns/mlflow.db"
ids=$(python - "$uri" <<'PY'
import sys
from mlflow import MlflowClient
c = MlflowClient(sys.argv[1]); e = c.get_experiment_by_name("hte-bench")
best = c.search_runs([e.experiment_id], "tags.`hte_bench.kind` = 'sweep'")[0].data.tags["best_parent_run_id"]
print(e.experiment_id, best)
PY
)
read -r exp best <<<"$ids"
"$shot" "$uri" "$out/model_training.png" "/#/experiments/$exp/runs?workflowType=machine_learning"
"$shot" "$uri" "$out/config_run.png" "/#/experiments/$exp/runs/$best"
# The committed pictures are cropped to the page (the assistant panel cut off). Under heavy load the UI may still be drawing when the tool takes the picture: look before committing.
echo "screenshots in $out"
