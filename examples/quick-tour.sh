#!/usr/bin/env bash
# The README's quick tour, step for step: run it from the checkout while `make demo` serves in another
# terminal. The test suite runs it against a demo server, so the README stays true.
set -euo pipefail
export PATH="$PWD/.venv/bin:$PATH"
export MODELPORT_API_KEY="${MODELPORT_API_KEY:-$(cat "${MODELPORT_DATA_DIR:-.modelport}/admin.key")}"

# --- tour ---
modelport models list                     # the demo's models, each with production -> 1

python - <<'PY'                           # a model of your own: any scikit-learn estimator, saved with skops
import skops.io
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

x, y = load_iris(return_X_y=True)
skops.io.dump(RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y), "model.skops")
skops.io.dump(RandomForestClassifier(n_estimators=5, max_depth=2, random_state=0).fit(x, y), "model-v2.skops")
PY

modelport models push flowers model.skops        # -> flowers v1, checked: state ready (or failed + reason)
modelport models promote flowers 1               # production -> 1
modelport predict flowers --data '[[5.1, 3.5, 1.4, 0.2]]'
modelport models push flowers model-v2.skops     # -> flowers v2
modelport models promote flowers 2               # production -> 2, loaded before it takes traffic
modelport predict flowers --data '[[5.1, 3.5, 1.4, 0.2]]'   # answered by version 2
modelport models rollback flowers                # production -> 1 again
modelport models versions flowers --output json
# --- end ---
