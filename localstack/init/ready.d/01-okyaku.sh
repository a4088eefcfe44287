#!/usr/bin/env bash
# Runs inside LocalStack once it is ready: creates what template.yaml expects to exist outside
# itself. `samlocal deploy` uploads the code to this bucket (samconfig.toml: s3_bucket).
set -euo pipefail

bucket="okyaku-sam-artifacts"
if ! awslocal s3api head-bucket --bucket "${bucket}" >/dev/null 2>&1; then
  awslocal s3 mb "s3://${bucket}"
fi
echo "okyaku: LocalStack is ready (artifact bucket ${bucket})"
