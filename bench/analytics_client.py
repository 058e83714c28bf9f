"""The HTTP client of bench/bench_analytics.sh: one keep-alive connection to an epp-analytics,
timing requests one after another, and the machine-stall probe printed beside the unique-users
figures.

    from analytics_client import Client, stalls
"""
import http.client
import time


class Client:
    """One keep-alive connection to an epp-analytics."""

    def __init__(self, port):
        self.port = port
        self.h = http.client.HTTPConnection("127.0.0.1", port)

    def get(self, path):
        """(milliseconds, status, body) of one GET."""
        for attempt in (0, 1):
            try:
                t0 = time.perf_counter()
                self.h.request("GET", path)
                r = self.h.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The plain-SQL baselines can keep the connection idle past HTTP_TIMEOUT_S
                # (30 s), and epp-analytics closes it: open a new one, as a client would.
                self.h.close()
                self.h = http.client.HTTPConnection("127.0.0.1", self.port)
                if attempt:
                    raise
        data = r.read()
        return (time.perf_counter() - t0) * 1000.0, r.status, data

    def measure(self, url, reqs):
        """First request's ms, then p50 and p99 over reqs requests after 20 to warm up, and the
        last answer."""
        first = self.get(url)[0]
        for _ in range(20):
            self.get(url)
        lat = []
        for _ in range(reqs):
            ms, st, data = self.get(url)
            assert st == 200, (st, data)
            lat.append(ms)
        lat.sort()
        return first, lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], data


def stalls(seconds=3.0, sleep_ms=1.0, over_ms=1.0):
    """What this machine does to a process that only sleeps: it sleeps sleep_ms at a time for
    seconds, and returns (wake-ups, how many came over over_ms late, the latest in ms). With
    nothing else running, a late wake-up is time no process could run; on this virtual machine,
    most likely the hypervisor's, though the guest counts almost no steal time (bench/README.md,
    "Tails and this machine"). A request that meets such a pause is slower by it, whatever the
    request runs."""
    n, late, worst = 0, 0, 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        time.sleep(sleep_ms / 1000.0)
        over = (time.perf_counter() - t0) * 1000.0 - sleep_ms
        n += 1
        if over > over_ms:
            late += 1
            worst = max(worst, over)
    return n, late, worst
