"""Send a bounded amount of traffic to a running matchmaker (default http://127.0.0.1:5001).

    python examples/workshop/traffic.py [--url URL] [--rounds N]

Each round hits every route once, including one unknown beer (404) and the failing /fryer
(500), and prints one line per request. Only loopback URLs make sense: this is a demo.
"""

from __future__ import annotations

import argparse
import time
import urllib.error
import urllib.request

PATHS = [
    "/beers", "/beers/dragonfly-ipa", "/beers/no-such-beer", "/donuts", "/donuts/maple-bacon",
    "/pair/beer?name=midnight-stout", "/pair/beer?name=orchard-sour", "/fryer",
]


def hit(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5001")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between requests")
    args = parser.parse_args()
    for n in range(args.rounds):
        for path in PATHS:
            print(f"round {n + 1}: {hit(args.url + path)} GET {path}", flush=True)
            time.sleep(args.pause)


if __name__ == "__main__":
    main()
