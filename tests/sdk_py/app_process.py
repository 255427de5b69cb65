"""An APP as a process of its own: ``run`` tracks, ``resume`` flushes, ``exit`` just ends.

``run`` prints each number whose event ``track`` accepted, then waits to be killed; ``exit``
tracks and returns at once, leaving the sending to the client's bounded flush at exit.
"""

from __future__ import annotations

import sys
import time

from sdk_py import Backoff, TelemetryClient


def main() -> None:
    url, spool, mode, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    client = TelemetryClient(
        url,
        spool=spool,
        batch_size=25,
        flush_interval=0.01,
        backoff=Backoff(base=0.01, cap=0.1),
        timeout=2,
    )
    if mode == "run":
        client.grant(personalization=True)
        for i in range(count):
            if client.track("screen_view", screen=f"k{i}"):
                print(i, flush=True)
            time.sleep(0.001)
        time.sleep(120)  # killed before this ends
    elif mode == "exit":
        client.grant(personalization=True)
        for i in range(count):
            client.track("screen_view", screen=f"x{i}")
        print("tracked", flush=True)
    else:
        print("flushed" if client.flush(30) else "not flushed", flush=True)
        client.shutdown()


if __name__ == "__main__":
    main()
