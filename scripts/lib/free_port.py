"""The one TCP port picker of the scripts, the tests and the benches.

free_port() returns a port that was free on every address a moment ago, drawn below the kernel's
ephemeral range (/proc/sys/net/ipv4/ip_local_port_range). A port from bind(0) lies inside that
range, where an outgoing connection of a process running alongside (a test's connection to
Postgres or Kafka) can take the same number as its local port before our service binds it. CI
once lost chaos.ingest to a port held like that, most likely (epp-analytics got "Address already
in use" for seconds; the holder was gone when looked for). Below the range only other picks
compete, and those draw at random from 12,000 numbers.

As a command: `python3 scripts/lib/free_port.py [N]` prints N (default 1) distinct ports, one per
line. Python's standard library only.
"""
import random
import socket
import sys

_PICK = random.SystemRandom()  # not the global generator, which tests may seed alike


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def free_port(avoid=()):
    """A port free a moment ago, below the ephemeral range and not in avoid; bind(0)'s answer
    when 200 draws found none."""
    lo = _ephemeral_low()
    for _ in range(200):
        port = _PICK.randrange(max(1024, lo - 12000), lo)
        if port not in avoid and _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv):
    n = int(argv[1]) if len(argv) > 1 else 1
    picked = []
    while len(picked) < n:
        picked.append(free_port(avoid=picked))
    print("\n".join(str(p) for p in picked))


if __name__ == "__main__":
    main(sys.argv)
