"""Helpers shared by the Segment SDK tests (tests/segment): where the npm install is, running the
Node.js driver, the event_id a messageId maps to, and reading the stored rows."""
import json
import os
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import epp_testlib as t  # noqa: E402

# ingestion_service/ingest_segment.h: INGEST_SEGMENT_NAMESPACE.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:epp:segment:messageId")


def npm_dir(env):
    """The build directory's install of tests/segment/package.json (the segment.npm_setup test)."""
    d = os.path.abspath(os.environ.get("EPP_SEGMENT_NPM") or
                        os.path.join(env["EPP_BUILD_DIR"], "tests", "segment", "npm"))
    t.check(os.path.isdir(os.path.join(d, "node_modules", "@segment", "analytics-node")),
            "@segment/analytics-node not installed in %s (segment.npm_setup)" % d)
    return d


def node_env(env, extra=None):
    e = dict(os.environ, NODE_PATH=os.path.join(npm_dir(env), "node_modules"))
    e.update(extra or {})
    return e


def start_node(env, plan, node_args=(), extra_env=None):
    """Starts segment_node.js with plan in the background; finish_node() collects its result."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(plan, f)
    proc = subprocess.Popen(["node"] + list(node_args) + [os.path.join(HERE, "segment_node.js"), f.name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=node_env(env, extra_env))
    proc.plan_path = f.name
    return proc


def finish_node(proc, timeout=180):
    """Waits for a start_node() process; returns its JSON result."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        os.unlink(proc.plan_path)
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    t.check(lines, "no result from node: rc %s\n%s\n%s" % (proc.returncode, stdout, stderr[-3000:]))
    out = json.loads(lines[-1])
    t.check("fatal" not in out, "node failed: %s" % out.get("fatal"))
    return out


def run_node(env, plan, node_args=(), extra_env=None, timeout=180):
    """Runs segment_node.js with plan; returns its JSON result."""
    return finish_node(start_node(env, plan, node_args, extra_env), timeout)


def event_id(message_id):
    """The event_id epp stores for a messageId (docs/segment.md)."""
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        return str(uuid.uuid5(NAMESPACE, message_id))


def rows(stack, where="true", params=()):
    """{event_id: (user_id, event_name, metadata dict, timestamp datetime)} of public.events."""
    conn = stack.db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT event_id::text, user_id, event_name, metadata, \"timestamp\" "
                        "FROM public.events WHERE " + where, params)
            return {r[0]: (r[1], r[2], r[3], r[4]) for r in cur.fetchall()}
    finally:
        conn.close()
