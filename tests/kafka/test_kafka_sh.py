#!/usr/bin/env python3
"""scripts/kafka.sh, the way the tests, `make run` and `make chaos` use it.

    test_kafka_sh.py BUILD_DIR fetch     pinned jars: verified without a download; a jar that
                                         differs from SHA256SUMS (or one too many) is refused
                                         loudly, and `start` will not run unverified jars
    test_kafka_sh.py BUILD_DIR stop      stop waits for a node's process, not for its command
                                         line (which an exiting JVM's loses first)
    test_kafka_sh.py BUILD_DIR cluster   3 nodes: ready means every node serves metadata; one
                                         node SIGKILLed loses no acknowledged message and
                                         writes go on; start-node brings it back; stop leaves
                                         no process; the data outlives a stop/start
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import epp_testlib as t  # noqa: E402

KAFKA_SH = os.path.join(t.REPO, "scripts", "kafka.sh")
SUMS = os.path.join(t.REPO, "scripts", "kafka", "SHA256SUMS")


def sh(*args, env=None):
    return subprocess.run(["bash", KAFKA_SH] + list(args), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))


def fetch(_env):
    r = sh("fetch")
    t.check(r.returncode == 0, "fetch: %s%s" % (r.stdout, r.stderr))
    version = sh("version").stdout.strip()
    libs = os.path.join(t.REPO, ".cache", "kafka", version, "libs")
    # A second fetch verifies and downloads nothing.
    r = sh("fetch")
    t.check(r.returncode == 0 and "verified in" in r.stdout and "fetching" not in r.stdout,
            "second fetch should only verify: %r" % r.stdout)

    tmp = tempfile.mkdtemp(prefix="kafka-sums-")
    try:
        cache = os.path.join(tmp, "cache")
        shutil.copytree(libs, os.path.join(cache, version, "libs"))
        # One sum changed: the jars are "not the pinned ones". fetch downloads again (the cached
        # set does not verify), and the download cannot verify either: a loud failure.
        with open(SUMS) as f:
            lines = f.read().splitlines()
        h, name = lines[0].split(None, 1)
        lines[0] = ("0" if h[0] != "0" else "1") + h[1:] + "  " + name.strip()
        bad = os.path.join(tmp, "SHA256SUMS")
        with open(bad, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = sh("fetch", env={"EPP_KAFKA_CACHE": cache, "EPP_KAFKA_SUMS": bad})
        t.check(r.returncode != 0 and "CHECKSUM MISMATCH" in r.stderr,
                "a tampered sum must fail fetch loudly: rc %d %r" % (r.returncode, r.stderr))
        r = sh("start", os.path.join(tmp, "c"), env={"EPP_KAFKA_CACHE": cache,
                                                     "EPP_KAFKA_SUMS": bad})
        t.check(r.returncode != 0 and "not verified" in r.stderr,
                "start must refuse unverified jars: %r" % r.stderr)
        t.check(not os.path.exists(os.path.join(tmp, "c", "node-1", "kafka.pid")),
                "no node was started")
        # One jar too many: the set differs from the pinned list.
        shutil.rmtree(os.path.join(cache, version, "libs"), ignore_errors=True)
        shutil.copytree(libs, os.path.join(cache, version, "libs"))
        with open(os.path.join(cache, version, "libs", "extra.jar"), "wb") as f:
            f.write(b"PK\x05\x06" + b"\0" * 18)
        r = sh("start", os.path.join(tmp, "c"), env={"EPP_KAFKA_CACHE": cache})
        t.check(r.returncode != 0 and "extra.jar" in r.stderr,
                "an extra jar must be named and refused: %r" % r.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("kafka.sh fetch: pinned jars verified; tampered sum and extra jar refused")


def node_pids(d):
    pids = []
    for k in (1, 2, 3):
        try:
            with open(os.path.join(d, "node-%d" % k, "kafka.pid")) as f:
                pids.append(int(f.read()))
        except OSError:
            pass
    return pids


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cluster(env):
    from confluent_kafka.admin import AdminClient
    with t.KafkaCluster(env, nodes=3) as kc:
        boot = kc.env["KAFKA_BOOTSTRAP_SERVERS"]
        t.check(len(boot.split(",")) == 3, "bootstrap lists 3 nodes: %s" % boot)
        for pid in node_pids(kc.dir):
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
            t.check(b"-Xmx512m" in cmd, "heap of at most 512 MiB: %r" % cmd[:6])
        md = AdminClient({"bootstrap.servers": boot}).list_topics(timeout=10)
        t.check(sorted(md.brokers) == [1, 2, 3], "metadata lists %r" % sorted(md.brokers))
        topic = t.create_topic(kc.env, t.unique_name("ksh"), 3)
        md = AdminClient({"bootstrap.servers": boot}).list_topics(topic, timeout=10)
        for p in md.topics[topic].partitions.values():
            t.check(len(p.replicas) == 3, "replication factor 3: %r" % p.replicas)
        conf = {"enable.idempotence": True, "acks": "all"}
        t.produce(kc.env, topic, [b"a%d" % i for i in range(1000)], **conf)

        kc.kill(2)
        r = kc.sh("status", kc.dir, check_rc=False)
        t.check(r.returncode == 3 and "node 2 not running" in r.stdout, "status: %r" % r.stdout)
        # One of three down: min.insync.replicas=2 still holds, so acks=all writes go on.
        t.produce(kc.env, topic, [b"b%d" % i for i in range(1000)], timeout=60, **conf)
        kc.start_node(2)
        r = kc.sh("status", kc.dir, check_rc=False)
        t.check(r.returncode == 0, "status after start-node: %r" % r.stdout)
        got = t.consume_all(kc.env, topic, count=2000, timeout=60)
        values = sorted(m[3] for m in got)
        t.check(values == sorted([b"a%d" % i for i in range(1000)] +
                                 [b"b%d" % i for i in range(1000)]),
                "2000 acknowledged messages, each once (got %d)" % len(values))

        pids = node_pids(kc.dir)
        kc.sh("stop", kc.dir)
        t.check(not any(alive(p) for p in pids), "nodes left running after stop: %r" % pids)
        # The data outlives the processes.
        r = kc.sh("start", kc.dir)
        kc.env["KAFKA_BOOTSTRAP_SERVERS"] = r.stdout.strip().splitlines()[-1].split("=", 1)[1]
        got = t.consume_all(kc.env, topic, count=2000, timeout=60)
        t.check(len(got) == 2000, "after restart: %d of 2000" % len(got))
    print("kafka.sh cluster: 3 nodes, SIGKILL of one lost nothing, restart kept the data")


def stop_waits(_env):
    """stop waits for a node's process to end, not for its command line to change: an exiting
    JVM's /proc/PID/cmdline reads empty while it still unmaps its heap. A stand-in node whose
    command line names its server.properties until SIGTERM, then turns into `sleep 2` (the same
    process, another command line), must be gone when stop returns."""
    import signal
    import time
    tmp = tempfile.mkdtemp(prefix="kafka-stop-")
    proc = None
    try:
        node = os.path.join(tmp, "node-1")
        os.makedirs(node)
        with open(os.path.join(tmp, "cluster.conf"), "w") as f:
            f.write("NODES=1\nCLUSTER_ID=x\nBROKER_PORT_1=1\nCONTROLLER_PORT_1=2\n")
        props = os.path.join(os.path.realpath(node), "server.properties")
        proc = subprocess.Popen(["bash", "-c", 'trap "exec sleep 2" TERM; '
                                 'while :; do sleep 0.05; done', props],
                                start_new_session=True)
        with open(os.path.join(node, "kafka.pid"), "w") as f:
            f.write("%d\n" % proc.pid)
        time.sleep(0.3)  # the trap is set
        t0 = time.monotonic()
        r = sh("stop", tmp)
        took = time.monotonic() - t0
        t.check(r.returncode == 0, "stop: %s%s" % (r.stdout, r.stderr))
        running = proc.poll() is None
        t.check(not running, "stop returned after %.1f s with the node's process running" % took)
        print("kafka.sh stop: waited %.1f s for a node whose command line changed as it exited"
              % took)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    build = t.build_dir_from()
    env = t.load_env(build)
    {"fetch": fetch, "cluster": cluster, "stop": stop_waits}[sys.argv[2]](env)


if __name__ == "__main__":
    main()
