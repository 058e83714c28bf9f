#!/usr/bin/env python3
"""Integration tests of the dev broker (tools/epp-devbroker) and of librdkafka against it.

    test_devbroker.py BUILD_DIR produce_consume KAFKA_PRODUCE_EXE
    test_devbroker.py BUILD_DIR down_up
    test_devbroker.py BUILD_DIR control_api
    test_devbroker.py BUILD_DIR cli

produce_consume uses the shared fixture broker; the other two inject faults, so they start a
private broker (t.DevBroker) and never disturb tests running in parallel.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import epp_testlib as t  # noqa: E402

from confluent_kafka import KafkaError, Producer  # noqa: E402


def produce_consume(env, exe):
    """10,000 messages from a C librdkafka producer process, consumed by this process in a
    consumer group: all of them, exactly once, in order per partition and per key."""
    count, keys, partitions = 10000, 100, 4
    topic = t.create_topic(env, t.unique_name("pc"), partitions)
    r = subprocess.run([exe, env["KAFKA_BOOTSTRAP_SERVERS"], topic, str(count), str(keys)],
                       capture_output=True, text=True, timeout=120)
    sys.stderr.write(r.stderr[-2000:])
    t.check(r.returncode == 0, "kafka_produce failed (%d): %s" % (r.returncode, r.stdout))
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    t.check(summary["delivered"] == count and summary["failed"] == 0, "summary %r" % summary)

    group = t.unique_name("group")
    got = t.consume_all(env, topic, count=count, group=group, timeout=60)
    t.check(len(got) == count, "consumed %d of %d" % (len(got), count))

    # Exactly once: nothing beyond what was produced is stored.
    wm = t.topic_offsets(env, topic)
    stored = sum(high - low for low, high in wm.values())
    t.check(stored == count, "broker holds %d messages, expected %d: %r" % (stored, count, wm))
    t.check(len(wm) == partitions, "partitions: %r" % wm)

    last_offset = {}
    next_seq = {}
    key_partition = {}
    seen = set()
    for partition, offset, key, value in got:
        t.check(offset > last_offset.get(partition, -1),
                "partition %d: offset %d after %d" % (partition, offset, last_offset.get(partition, -1)))
        last_offset[partition] = offset
        v = json.loads(value)
        t.check(key.decode() == v["key"], "key/value mismatch %r %r" % (key, v))
        t.check(key_partition.setdefault(v["key"], partition) == partition,
                "key %s in two partitions" % v["key"])
        t.check(v["seq"] == next_seq.get(v["key"], 0),
                "key %s: seq %d, expected %d" % (v["key"], v["seq"], next_seq.get(v["key"], 0)))
        next_seq[v["key"]] = v["seq"] + 1
        seen.add(v["i"])
    t.check(seen == set(range(count)), "missing %d messages" % (count - len(seen)))
    t.check(all(n == count // keys for n in next_seq.values()) and len(next_seq) == keys,
            "per-key counts wrong")
    print("produce_consume: %d messages over %d partitions, in order" % (count, len(wm)))


class DeliveryWatcher:
    def __init__(self):
        self.reports = []

    def __call__(self, err, msg):
        self.reports.append((err, msg.value()))


def deliver_one(p, topic, value, watcher, timeout):
    """Produces one message and polls until its delivery report; returns (err, seconds)."""
    n = len(watcher.reports)
    start = time.monotonic()
    p.produce(topic, value=value, on_delivery=watcher)
    while len(watcher.reports) == n:
        p.poll(0.05)
        t.check(time.monotonic() - start < timeout, "no delivery report for %r in %.0fs" %
                (value, timeout))
    return watcher.reports[-1][0], time.monotonic() - start


def down_up(env):
    """Brokers down -> a producer's delivery fails with a timeout; brokers up -> the same
    producer delivers again. Nothing is restarted."""
    with t.DevBroker(env, brokers=1) as kenv:
        topic = t.create_topic(kenv, t.unique_name("du"), 1)
        p = Producer({
            "bootstrap.servers": kenv["KAFKA_BOOTSTRAP_SERVERS"],
            "message.timeout.ms": 2000,
            "linger.ms": 0,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
        })
        w = DeliveryWatcher()
        err, secs = deliver_one(p, topic, b"before", w, 15)
        t.check(err is None, "delivery before the outage failed: %s" % err)

        status, body = t.broker_control(kenv, "POST", "/brokers/down")
        t.check(status == 200 and body["up"] is False, "down: %s %r" % (status, body))
        status, info = t.broker_control(kenv, "GET", "/info")
        t.check(not info["brokers"][0]["up"], "info after down: %r" % info)
        err, secs = deliver_one(p, topic, b"during", w, 15)
        t.check(err is not None and err.code() == KafkaError._MSG_TIMED_OUT,
                "delivery during the outage: expected a timeout, got %s" % err)
        t.check(1.5 <= secs <= 10, "timeout after %.1fs (message.timeout.ms=2000)" % secs)
        print("down_up: brokers down -> %s after %.1fs" % (err.name(), secs))

        status, body = t.broker_control(kenv, "POST", "/brokers/up")
        t.check(status == 200 and body["up"] is True, "up: %s %r" % (status, body))
        err, secs = deliver_one(p, topic, b"after", w, 20)
        t.check(err is None, "delivery after the outage failed: %s" % err)
        print("down_up: brokers up -> delivered after %.1fs with the same producer" % secs)
        p.flush(5)
        values = [m[3] for m in t.consume_all(kenv, topic, count=2, timeout=20)]
        t.check(b"before" in values and b"after" in values, "stored: %r" % values)


def control_api(env):
    """Every control endpoint answers 200 and has its effect; bad requests get 400."""
    with t.DevBroker(env, brokers=2, topics=("extra:3",)) as kenv:
        def ok(method, path):
            status, body = t.broker_control(kenv, method, path)
            t.check(status == 200, "%s %s: %s %r" % (method, path, status, body))
            return body

        def refused(path, want=400, method="POST"):
            status, body = t.broker_control(kenv, method, path)
            t.check(status == want and "error" in body,
                    "%s %s: expected %d, got %s %r" % (method, path, want, status, body))

        t.check(ok("GET", "/health") == {"status": "ok"}, "health")
        info = ok("GET", "/info")
        t.check(info["bootstrap"] == kenv["KAFKA_BOOTSTRAP_SERVERS"], "info bootstrap")
        t.check([b["id"] for b in info["brokers"]] == [1, 2], "info brokers %r" % info)
        topics = {x["name"]: x["partitions"] for x in info["topics"]}
        t.check(topics == {"events": 6, "events.dlq": 6, "extra": 3}, "topics %r" % topics)

        topic = t.unique_name("ctl")
        t.check(ok("POST", "/topics?name=%s&partitions=2" % topic)["created"] is True, "create")
        t.check(ok("POST", "/topics?name=%s&partitions=2" % topic)["created"] is False, "again")
        ok("POST", "/brokers/2/down")
        t.check(not ok("GET", "/info")["brokers"][1]["up"], "broker 2 down in /info")
        ok("POST", "/brokers/2/up")
        ok("POST", "/brokers/1/rtt?ms=0")
        ok("POST", "/errors?api=Metadata&count=1&codes=NO_ERROR")
        ok("POST", "/errors/clear?api=Metadata")
        ok("POST", "/topics/%s/error?code=NO_ERROR" % topic)
        ok("POST", "/errors?api=3&codes=RD_KAFKA_RESP_ERR_NO_ERROR")
        ok("POST", "/errors/clear?api=3")

        # Leader change: partition 0 to broker 2, visible in metadata.
        t.check(ok("POST", "/topics/%s/partitions/0/leader?broker=2" % topic)["leader"] == 2, "")
        p = Producer({"bootstrap.servers": kenv["KAFKA_BOOTSTRAP_SERVERS"], "linger.ms": 0,
                      "message.timeout.ms": 10000, "topic.metadata.refresh.interval.ms": 500})
        md = t.wait_for(lambda: (lambda m: m if m.topics[topic].partitions[0].leader == 2
                                 else None)(p.list_topics(topic, timeout=5)),
                        timeout=10, msg="leader of partition 0 = broker 2")
        t.check(md.topics[topic].partitions[0].leader == 2, "leader")

        w = DeliveryWatcher()

        def deliver(value):
            n = len(w.reports)
            start = time.monotonic()
            p.produce(topic, value=value, partition=0, on_delivery=w)
            while len(w.reports) == n:
                p.poll(0.05)
                t.check(time.monotonic() - start < 20, "no delivery report")
            return w.reports[-1][0], time.monotonic() - start

        err, _ = deliver(b"warm-up")
        t.check(err is None, "warm-up: %s" % err)

        # A permanent error is reported to the producer, and only for the next request.
        body = ok("POST", "/errors?api=Produce&count=1&codes=MSG_SIZE_TOO_LARGE")
        t.check(body == {"api": 0, "count": 1}, "errors reply %r" % body)
        err, _ = deliver(b"rejected")
        t.check(err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE,
                "injected MSG_SIZE_TOO_LARGE: got %s" % err)
        err, _ = deliver(b"next")
        t.check(err is None, "after the injected error: %s" % err)

        # Retriable errors are retried by librdkafka: delivery still succeeds.
        ok("POST", "/errors?api=Produce&codes=NOT_LEADER_FOR_PARTITION,REQUEST_TIMED_OUT")
        err, _ = deliver(b"retried")
        t.check(err is None, "retriable injected errors: %s" % err)

        # A delayed response from the leader (broker 2).
        body = ok("POST", "/brokers/2/error_rtts?api=Produce&errors=NO_ERROR:1500")
        t.check(body["count"] == 1 and body["broker"] == 2, "error_rtts reply %r" % body)
        err, secs = deliver(b"slow")
        t.check(err is None and secs >= 1.4, "slow delivery: %s after %.2fs" % (err, secs))
        err, secs = deliver(b"fast")
        t.check(err is None and secs < 1.4, "after the delay: %s after %.2fs" % (err, secs))
        print("control_api: injected 1.5 s produce delay observed (%.2fs after)" % secs)
        p.flush(5)

        for path in ["/errors?api=Nope&codes=NO_ERROR",
                     "/errors?api=Produce",
                     "/errors?api=Produce&codes=NOPE",
                     "/errors?api=Produce&codes=NO_ERROR&count=0",
                     "/errors?api=Produce&codes=NO_ERROR&count=abc",
                     "/errors/clear",
                     "/brokers/9/down",
                     "/brokers/0/up",
                     "/brokers/abc/rtt?ms=1",
                     "/brokers/1/rtt",
                     "/brokers/1/rtt?ms=-1",
                     "/brokers/1/error_rtts?api=Produce",
                     "/brokers/1/error_rtts?api=Produce&errors=REQUEST_TIMED_OUT",
                     "/brokers/1/error_rtts?api=Produce&errors=REQUEST_TIMED_OUT:abc",
                     "/brokers/1/error_rtts?api=Bad&errors=NO_ERROR:1",
                     "/topics",
                     "/topics?name=bad%20name",
                     "/topics?name=ok&partitions=0",
                     "/topics?name=ok&replication=3",
                     "/topics/%s/partitions/0/leader?broker=7" % topic,
                     "/topics/%s/partitions/0/leader" % topic,
                     "/topics/%s/partitions/abc/leader?broker=1" % topic,
                     "/topics/%s/partitions/5/leader?broker=1" % topic,
                     "/topics/%s/error?code=WHAT" % topic]:
            refused(path)
        refused("/nope", 404, "GET")
        refused("/brokers/1/sideways", 404)
        refused("/brokers/down", 405, "GET")
        refused("/health", 405, "POST")
        t.check(ok("GET", "/health") == {"status": "ok"}, "still healthy")


def cli(env):
    """--help, the two stdout lines, bad flags, and a clean exit on SIGINT and SIGTERM."""
    import signal
    import tempfile
    exe = t.bin_path(env, "epp-devbroker")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10)
    t.check(r.returncode == 0, "--help exit %d" % r.returncode)
    for word in ("--brokers", "--partitions", "--topic", "--addr-file", "--control-file",
                 "--control-port", "in-memory", "Apache Kafka", "5 MiB", "/brokers/down",
                 "/errors?api=Produce", "error_rtts", "/topics?name=T"):
        t.check(word in r.stdout, "--help lacks %r" % word)

    r = subprocess.run([exe, "--brokers", "0"], capture_output=True, text=True, timeout=10)
    t.check(r.returncode == 2 and "brokers" in r.stderr, "--brokers 0: %d %s" %
            (r.returncode, r.stderr))
    r = subprocess.run([exe, "--topic", "bad/name"], capture_output=True, text=True, timeout=10)
    t.check(r.returncode == 1 and "bad topic name" in r.stderr, "bad topic: %d %s" %
            (r.returncode, r.stderr))

    for sig in (signal.SIGINT, signal.SIGTERM):
        d = tempfile.mkdtemp(prefix="devbroker-cli-")
        addr = os.path.join(d, "addr")
        p = subprocess.Popen([exe, "--brokers", "2", "--topic", "a:2", "--topic=b",
                              "--addr-file", addr, "--log-format", "text"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = p.stdout.readline().strip()
        second = p.stdout.readline().strip()
        t.check(first.count("127.0.0.1:") == 2, "bootstrap line %r" % first)
        t.check(second.startswith("http://127.0.0.1:"), "control line %r" % second)
        with open(addr) as f:
            t.check(f.read().strip() == first, "addr file")
        status, _, info = t.http_json("GET", second + "/info")
        names = sorted(x["name"] for x in info["topics"])
        t.check(names == ["a", "b", "events", "events.dlq"], "topics %r" % names)
        p.send_signal(sig)
        _, err = p.communicate(timeout=15)
        t.check(p.returncode == 0, "exit %d after %s: %s" % (p.returncode, sig.name, err[-500:]))
        t.check(not os.path.exists(addr), "addr file left after exit")
        os.rmdir(d)
    print("cli: ok")


def main():
    build = t.build_dir_from()
    env = t.load_env(build)
    name = sys.argv[2]
    if name == "produce_consume":
        produce_consume(env, sys.argv[3])
    elif name == "down_up":
        down_up(env)
    elif name == "control_api":
        control_api(env)
    elif name == "cli":
        cli(env)
    else:
        raise SystemExit("unknown test %s" % name)


if __name__ == "__main__":
    main()
