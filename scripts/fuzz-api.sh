#!/usr/bin/env bash
# The longer contract run (not in CI): schemathesis through the gateway, as the CI lane
# (tests/tests/e2e/contract.rs) but with a random seed, more cases per operation and the
# stateful phase. Prints the seed, so a failure can be replayed with
#   SCHEMATHESIS_SEED=<seed> scripts/fuzz-api.sh
# Settings: SCHEMATHESIS_SEED (random), SCHEMATHESIS_MAX_EXAMPLES (200),
# SCHEMATHESIS_PHASES (examples,coverage,fuzzing,stateful).
set -euo pipefail
cd "$(dirname "$0")/.."
export SCHEMATHESIS_SEED="${SCHEMATHESIS_SEED:-random}"
export SCHEMATHESIS_MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-200}"
export SCHEMATHESIS_PHASES="${SCHEMATHESIS_PHASES:-examples,coverage,fuzzing,stateful}"
exec scripts/test.sh --profile fuzz --no-capture -E 'test(/^contract::schemathesis_/)'
