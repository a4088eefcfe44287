#!/bin/sh
# The compose `migrate` service: install the okyaku package from a copy of the (read-only)
# sources, then run its migrations as the owner (DATABASE_MIGRATION_URL).
set -eu
rm -rf /tmp/okyaku
mkdir -p /tmp/okyaku
cp -r /src/pyproject.toml /src/README.md /src/shared /tmp/okyaku/
pip install --quiet --no-cache-dir /tmp/okyaku
okyaku migrate
echo "okyaku: migrations applied"
