#!/bin/sh
# Superset provisioning, run once by the superset-init service: metadata database, admin user,
# roles and permissions, then the epp bundle (the events_db connection, a dataset on
# public.events, and the "epp events" dashboard). Idempotent: safe to run again.
set -eu
superset db upgrade
superset fab create-admin \
    --username "$SUPERSET_ADMIN_USER" --password "$SUPERSET_ADMIN_PASSWORD" \
    --firstname epp --lastname admin --email "$SUPERSET_ADMIN_EMAIL" || true
superset init
# The importer takes a ZIP whose single top-level folder holds metadata.yaml and the asset
# folders; the bundle is kept unzipped in the repository so that it can be reviewed and tested.
python3 - <<'PY'
import os, zipfile
src = "/app/epp/bundle"
with zipfile.ZipFile("/tmp/epp_bundle.zip", "w") as z:
    for root, _, files in os.walk(src):
        for f in files:
            path = os.path.join(root, f)
            z.write(path, os.path.join("epp_bundle", os.path.relpath(path, src)))
PY
superset import-dashboards --path /tmp/epp_bundle.zip --username "$SUPERSET_ADMIN_USER"
echo "superset-init: done"
