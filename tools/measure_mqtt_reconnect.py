"""How soon the MQTT sink is back after its broker restarts (a real mosquitto on 127.0.0.1).

For each round: the sink publishes to a running broker, the broker is stopped (SIGTERM),
records pile up in the outbox for ``--down`` seconds, the broker is started again; measured
are the time from the broker accepting TCP connections again to the sink's CONNACK
(reconnect) and to the outbox being empty (every record delivered). Prints every round and
the median and maximum; no assertion (``tests/python/test_delivery.py`` checks delivery).

    .venv/bin/python tools/measure_mqtt_reconnect.py --rounds 5 --down 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

from line_helpers import MOSQUITTO, Broker, make_item  # noqa: E402

from edgeseg.sinks.base import open_sink  # noqa: E402

logging.getLogger("edgeseg").setLevel(logging.ERROR)  # the sink's own warnings per round


def one_round(work: Path, down: float, records: int) -> tuple[float, float]:
    broker = Broker(work / "broker")
    broker.start()
    sink = open_sink(f"mqtt://127.0.0.1:{broker.port}/bench/r", outbox=work / "outbox")
    connected = threading.Event()
    sink.open()
    try:
        on_connect = sink._client.on_connect

        def spy(*args) -> None:
            on_connect(*args)
            connected.set()

        sink._client.on_connect = spy
        deadline = time.monotonic() + 10
        while not sink.stats()["connected"] and time.monotonic() < deadline:
            time.sleep(0.01)
        broker.stop()
        for i in range(records):
            sink.write(make_item(i))
        time.sleep(down)
        connected.clear()
        broker.start()  # returns once the broker accepts TCP connections
        t_up = time.monotonic()
        if not connected.wait(30):
            raise RuntimeError("the sink did not reconnect within 30 s")
        t_conn = time.monotonic()
        if not sink.flush(30):
            raise RuntimeError("the outbox did not drain within 30 s")
        t_drained = time.monotonic()
        return t_conn - t_up, t_drained - t_up
    finally:
        sink.close(drain_timeout=0)
        broker.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--down", type=float, default=3.0, help="seconds the broker stays down")
    ap.add_argument("--records", type=int, default=50, help="records written while it is down")
    ap.add_argument(
        "--delays",
        metavar="MIN,MAX",
        help="paho reconnect delays to try instead of edgeseg's (e.g. 1,4 for paho's usual)",
    )
    args = ap.parse_args()
    if args.delays:
        import edgeseg._mqtt as m

        m.RECONNECT_MIN_S, m.RECONNECT_MAX_S = (float(x) for x in args.delays.split(","))
    import edgeseg._mqtt as m

    print(f"reconnect delays {m.RECONNECT_MIN_S:g}..{m.RECONNECT_MAX_S:g} s")
    if MOSQUITTO is None:
        print("needs mosquitto (apt-get install mosquitto)", file=sys.stderr)
        return 2
    rec, drain = [], []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as d:
            a, b = one_round(Path(d), args.down, args.records)
        rec.append(a)
        drain.append(b)
        print(f"round {r + 1}: reconnected {a * 1000:.0f} ms, {args.records} queued records "
              f"delivered {b * 1000:.0f} ms after the broker came back")  # fmt: skip
    print(
        f"reconnect after broker restart: median {statistics.median(rec) * 1000:.0f} ms, "
        f"max {max(rec) * 1000:.0f} ms; outbox drained: median "
        f"{statistics.median(drain) * 1000:.0f} ms, max {max(drain) * 1000:.0f} ms "
        f"({args.rounds} rounds, broker down {args.down:g} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
