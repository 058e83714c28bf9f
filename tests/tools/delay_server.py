"""A tiny HTTP/1.1 server whose latency is stable: it answers every request (keep-alive) with
202 after exactly --delay-ms, from timers on one asyncio loop, so many requests wait in
parallel and the answer time does not depend on how requests arrive. The reference for
comparing epp-load's latency measurement with wrk's (test_tools_load.py).

    python3 delay_server.py PORT_FILE DELAY_MS     # writes the chosen port to PORT_FILE
"""
import asyncio
import sys

BODY = b'{"status":"accepted"}'
REPLY = (b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
         % (len(BODY), BODY))


class Proto(asyncio.Protocol):
    def __init__(self, delay):
        self.delay = delay
        self.buf = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        loop = asyncio.get_running_loop()
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n"):
                if line.startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            loop.call_later(self.delay, self.reply)

    def reply(self):
        if not self.transport.is_closing():
            self.transport.write(REPLY)


async def main():
    port_file, delay_ms = sys.argv[1], float(sys.argv[2])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Proto(delay_ms / 1000.0), "127.0.0.1", 0,
                                      backlog=1024)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
