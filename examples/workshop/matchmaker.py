"""matchmaker: pairs craft beers with donuts (the workshop's front service).

Beers live in a SQL database through SQLAlchemy (``DATABASE_URL``, e.g.
``postgresql+psycopg://user@127.0.0.1:5432/db``; SQLite in a temporary file when unset),
donuts live in Redis (``REDIS_URL``). ``/pair/beer?name=`` asks the ``taster`` service
(``TASTER_URL``) over HTTP with ``requests`` for the beer's dominant flavour, then picks the
donut that matches it. ``/fryer`` always fails, to show an error trace.

There is no tracing code here on purpose: run it under ``opentelemetry-instrument`` (see
README.md) and the Flask, SQLAlchemy, Redis and requests instrumentations do the work.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, cast

import redis
import requests
import sqlalchemy as sa
from flask import Flask, abort, jsonify, request
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

BEERS = [
    # name, style, abv, hops
    ("dragonfly-ipa", "ipa", 6.8, "citra"),
    ("midnight-stout", "stout", 8.1, "fuggle"),
    ("orchard-sour", "sour", 4.9, "saaz"),
    ("harbour-lager", "lager", 4.5, "hallertau"),
]
DONUTS = {
    # name -> flavour it pairs with, and how it is made
    "maple-bacon": {"flavour": "roasty", "glaze": "maple"},
    "lemon-curd": {"flavour": "tart", "glaze": "lemon"},
    "honey-dip": {"flavour": "bitter", "glaze": "honey"},
    "old-fashioned": {"flavour": "crisp", "glaze": "none"},
}


class Base(DeclarativeBase):
    pass


class Beer(Base):
    __tablename__ = "beers"
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    style: Mapped[str] = mapped_column(sa.String(32))
    abv: Mapped[float] = mapped_column(sa.Float)
    hops: Mapped[str] = mapped_column(sa.String(32))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "style": self.style, "abv": self.abv, "hops": self.hops}


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url:
        return url
    return f"sqlite:///{os.path.join(tempfile.gettempdir(), 'workshop-beers.db')}"


engine = sa.create_engine(_database_url(), pool_pre_ping=True)
donuts = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                              decode_responses=True)
TASTER_URL = os.environ.get("TASTER_URL", "http://127.0.0.1:5002")
app = Flask("matchmaker")


def seed(wait_s: float = 15.0) -> None:
    """Create and fill the beer table and the donut hashes (idempotent).

    Waits up to ``wait_s`` for Redis, which start.sh may have launched a moment ago.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            donuts.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        for name, style, abv, hops in BEERS:
            session.merge(Beer(name=name, style=style, abv=abv, hops=hops))
    for name, fields in DONUTS.items():
        for field, value in fields.items():
            donuts.hset(f"donut:{name}", field, value)
        donuts.sadd("donuts", name)


def _donut_names() -> list[str]:
    # decode_responses=True: members are str (redis-py's stubs say bytes)
    return sorted(cast(set[str], donuts.smembers("donuts")))


def _beer(name: str) -> Beer:
    with Session(engine) as session:
        beer = session.execute(sa.select(Beer).where(Beer.name == name)).scalar_one_or_none()
    if beer is None:
        abort(404, description=f"no beer named {name!r}")
    return beer


@app.route("/beers")
def list_beers() -> Any:
    with Session(engine) as session:
        beers = session.execute(sa.select(Beer).order_by(Beer.name)).scalars().all()
    return jsonify([b.as_dict() for b in beers])


@app.route("/beers/<name>")
def get_beer(name: str) -> Any:
    return jsonify(_beer(name).as_dict())


@app.route("/donuts")
def list_donuts() -> Any:
    return jsonify(_donut_names())


@app.route("/donuts/<name>")
def get_donut(name: str) -> Any:
    fields = donuts.hgetall(f"donut:{name}")
    if not fields:
        abort(404, description=f"no donut named {name!r}")
    return jsonify({"name": name, **fields})


@app.route("/pair/beer")
def pair_beer() -> Any:
    name = request.args.get("name", "")
    beer = _beer(name)
    tasting = requests.get(f"{TASTER_URL}/taste", params={"style": beer.style, "abv": str(beer.abv)},
                           timeout=5)
    tasting.raise_for_status()
    flavour = tasting.json()["flavour"]
    for donut in _donut_names():
        if donuts.hget(f"donut:{donut}", "flavour") == flavour:
            return jsonify({"beer": beer.name, "flavour": flavour, "donut": donut})
    return jsonify({"beer": beer.name, "flavour": flavour, "donut": None})


@app.route("/fryer")
def fryer() -> Any:
    raise RuntimeError("the donut fryer caught fire")


if __name__ == "__main__":
    seed()
    app.run(host="127.0.0.1", port=int(os.environ.get("MATCHMAKER_PORT", "5001")), threaded=True)
