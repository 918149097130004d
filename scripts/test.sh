#!/usr/bin/env bash
# Set up whatever is missing, then run the tests with every warning as an error. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -W error "$@"
