"""Time to the first SSE event, N sequential streaming requests per target, interleaved.

usage: first_event.py N name=host:port:model [name=host:port:model ...]
Prints p50 and p90 in milliseconds per target. Loopback only; stdlib only.
"""
import socket
import statistics
import sys
import time


def first_event_ms(host: str, port: int, model: str) -> float:
    body = ('{"model":"%s","stream":true,"messages":[{"role":"user","content":"hello"}]}' % model).encode()
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection((host, port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        s.sendall(req)
        buf = b""
        while b"data:" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed before the first event")
            buf += chunk
        t1 = time.perf_counter()
        while s.recv(65536):
            pass
    return (t1 - t0) * 1000.0


def main() -> None:
    n = int(sys.argv[1])
    targets = []
    for spec in sys.argv[2:]:
        name, rest = spec.split("=", 1)
        host, port, model = rest.split(":")
        targets.append((name, host, int(port), model))
    samples = {t[0]: [] for t in targets}
    for _ in range(n):
        for name, host, port, model in targets:
            samples[name].append(first_event_ms(host, port, model))
    for name, _, _, _ in targets:
        xs = sorted(samples[name])
        p90 = xs[int(len(xs) * 0.9) - 1]
        print(f"{name} {statistics.median(xs):.3f} {p90:.3f}")


if __name__ == "__main__":
    main()
