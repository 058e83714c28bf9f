"""Superset's configuration for epp: `make superset` (scripts/superset.sh) and the Compose
service load this same file (SUPERSET_CONFIG_PATH). docs/superset.md explains each choice.

Everything Superset keeps lives in SUPERSET_HOME: the metadata database (SQLite) and the secret
key, which docker/superset/provision.py generates once into a 0600 file there (never in the
repository). SUPERSET_SECRET_KEY, when set, wins over that file.
"""

import copy
import os

_HOME = os.environ["SUPERSET_HOME"]


def _secret_key():
    key = os.environ.get("SUPERSET_SECRET_KEY")
    if key:
        return key
    path = os.path.join(_HOME, "secret_key")
    try:
        with open(path, encoding="utf-8") as f:
            key = f.read().strip()
    except OSError:
        key = ""
    if not key:
        # Superset refuses to start with its default key; say what to do instead.
        raise RuntimeError("no secret key in %s: run `scripts/superset.sh provision` first" % path)
    return key


SECRET_KEY = _secret_key()
SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(_HOME, "superset.db")
DATA_DIR = _HOME

FEATURE_FLAGS = {
    # The dashboard's datasets pass the time filter into public.epp_event_counts (sql/020) with
    # {{ from_dttm }} and {{ to_dttm }}, so that every chart is exact at any range.
    "ENABLE_TEMPLATE_PROCESSING": True,
}

# No result cache: every chart query reads Postgres, so charts show what is stored now (each
# query reads rollups and takes milliseconds; bench/bench_superset.sh measures it).
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

# Relative time ranges end now, not at midnight: "Last week" is the seven days up to this second
# (Superset's default, "today", would leave out today's events). The server runs with TZ=UTC
# (scripts/superset.sh), the zone every epp bucket is cut in.
DEFAULT_RELATIVE_START_TIME = "now"
DEFAULT_RELATIVE_END_TIME = "now"

# Superset's pages load a usage-statistics image from scarf.sh (its default content security
# policy allows it); the policy here is Superset's own without that host, so the browser never
# contacts it and nothing leaves the machine when someone opens a dashboard.
from superset.config import TALISMAN_CONFIG as _SUPERSET_TALISMAN  # noqa: E402

TALISMAN_CONFIG = copy.deepcopy(_SUPERSET_TALISMAN)
TALISMAN_CONFIG["content_security_policy"]["img-src"] = [
    src for src in _SUPERSET_TALISMAN["content_security_policy"]["img-src"] if "scarf.sh" not in src]
