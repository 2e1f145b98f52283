#!/usr/bin/env python3
"""Drives the unchanged PyPI `influxdb` client (5.3.x) against a server on 127.0.0.1:PORT.

Usage: client_test.py PORT [USERNAME PASSWORD]
Prints `ok` and exits 0 when every check passes; prints the failure and exits 1 otherwise.
Works against a real InfluxDB 1.x and must work against tsdb-backend. With USERNAME and
PASSWORD the client sends them (as Basic credentials) with every request, and a wrong
password must be refused with 401: how the gateway takes an API key from InfluxDB 1.x
clients.
"""
import sys
import traceback


def check(cond, what, got=None):
    if not cond:
        raise AssertionError(f"{what}; got {got!r}")


def run(port, username=None, password=None):
    from influxdb import InfluxDBClient

    credentials = {} if username is None else {"username": username, "password": password}
    client = InfluxDBClient(host="127.0.0.1", port=port, timeout=10, retries=1, **credentials)

    version = client.ping()
    check(isinstance(version, str) and version != "", "ping() returns the X-Influxdb-Version header", version)

    db = "pyclient_db"
    client.drop_database(db)
    client.create_database(db)
    names = [d["name"] for d in client.get_list_database()]
    check(db in names, "get_list_database() lists the created database", names)

    points = [
        {
            "measurement": "cpu",
            "tags": {"host": "a", "region": "east"},
            "time": 946684800,
            "fields": {"value": 1.5, "count": 10, "ok": True, "msg": "hello"},
        },
        {
            "measurement": "cpu",
            "tags": {"host": "b", "region": "west"},
            "time": 946684810,
            "fields": {"value": 2.5, "count": 20, "ok": False, "msg": "wo rld,=\""},
        },
        {
            "measurement": "cpu",
            "tags": {"host": "a", "region": "east"},
            "time": 946684820,
            "fields": {"value": 3.5, "count": 30, "ok": True, "msg": "x"},
        },
    ]
    check(client.write_points(points, time_precision="s", database=db) is True, "write_points(time_precision='s')")

    # Default precision: RFC3339 strings in the point dicts, nanoseconds on the wire.
    more = [
        {
            "measurement": "mem",
            "tags": {"host": "a"},
            "time": "2000-01-01T00:00:05Z",
            "fields": {"used": 100, "free": 0.25},
        },
        {
            "measurement": "mem",
            "tags": {"host": "b"},
            "time": "2000-01-01T00:00:15.5Z",
            "fields": {"used": 200, "free": 0.75},
        },
    ]
    check(client.write_points(more, database=db) is True, "write_points(default precision)")

    rs = client.query('SELECT "value", "count", "ok", "msg", "host" FROM "cpu"', database=db)
    rows = list(rs.get_points())
    check(len(rows) == 3, "three cpu points", rows)
    check(rows[0]["time"] == "2000-01-01T00:00:00Z", "RFC3339 time of the first point", rows[0])
    check(rows[0]["value"] == 1.5 and rows[0]["count"] == 10, "float and integer fields", rows[0])
    check(isinstance(rows[0]["count"], int), "integer field decodes as int", rows[0])
    check(rows[0]["ok"] is True and rows[1]["ok"] is False, "boolean fields", rows)
    check(rows[1]["msg"] == "wo rld,=\"", "string field with special characters", rows[1])
    check(rows[1]["host"] == "b", "tag in the select list", rows[1])

    rs = client.query("SELECT * FROM mem", database=db)
    rows = list(rs.get_points(measurement="mem"))
    check([r["used"] for r in rows] == [100, 200], "SELECT * of default-precision points", rows)
    check(rows[1]["time"].startswith("2000-01-01T00:00:15.5"), "sub-second time survives", rows[1])

    rs = client.query("SELECT count(value), mean(value) FROM cpu", database=db)
    agg = list(rs.get_points())
    check(len(agg) == 1 and agg[0]["count"] == 3 and abs(agg[0]["mean"] - 2.5) < 1e-9, "count and mean", agg)

    rs = client.query("SELECT sum(value) FROM cpu GROUP BY host", database=db)
    by_host = {tags["host"]: list(rs.get_points(tags=tags)) for (_, tags) in rs.keys()}
    check(set(by_host) == {"a", "b"}, "GROUP BY host gives a series per host", rs.raw)
    check(by_host["a"][0]["sum"] == 5 and by_host["b"][0]["sum"] == 2.5, "per-host sums", by_host)
    check(list(rs.get_points(tags={"host": "a"}))[0]["sum"] == 5, "get_points(tags=...)", rs.raw)

    rs = client.query(
        "SELECT mean(value) FROM cpu WHERE time >= '2000-01-01T00:00:00Z' AND time < '2000-01-01T00:00:30Z' GROUP BY time(10s)",
        database=db,
    )
    buckets = list(rs.get_points())
    check([b["mean"] for b in buckets] == [1.5, 2.5, 3.5], "GROUP BY time buckets", buckets)

    rs = client.query("SELECT value FROM cpu WHERE host = 'b'", database=db, epoch="s")
    rows = list(rs.get_points())
    check(rows == [{"time": 946684810, "value": 2.5}], "epoch='s' integer times", rows)

    rs = client.query("SHOW MEASUREMENTS", database=db)
    meas = [m["name"] for m in rs.get_points()]
    check(meas == ["cpu", "mem"], "SHOW MEASUREMENTS", meas)

    rs = client.query("SHOW TAG VALUES FROM cpu WITH KEY = host", database=db)
    check([p["value"] for p in rs.get_points()] == ["a", "b"], "SHOW TAG VALUES", rs.raw)

    # Errors surface as client exceptions.
    from influxdb.exceptions import InfluxDBClientError

    try:
        client.query("SELEC * FROM cpu", database=db)
        raise AssertionError("a parse error must raise")
    except InfluxDBClientError as e:
        check(e.code == 400 and "error parsing query" in str(e), "parse error is a 400", (e.code, str(e)))
    try:
        client.write_points([{"measurement": "cpu", "fields": {"value": "str"}, "time": 946684800}], time_precision="s", database=db)
        raise AssertionError("a field type conflict must raise")
    except InfluxDBClientError as e:
        check(e.code == 400 and "field type conflict" in str(e), "type conflict is a 400", (e.code, str(e)))

    client.drop_database(db)
    names = [d["name"] for d in client.get_list_database()]
    check(db not in names, "drop_database() removes it", names)

    if username is not None:
        wrong = InfluxDBClient(
            host="127.0.0.1", port=port, timeout=10, retries=1, username=username, password=password + "x"
        )
        try:
            wrong.query("SHOW DATABASES")
            raise AssertionError("a wrong password must be refused")
        except InfluxDBClientError as e:
            check(e.code == 401, "a wrong password is a 401", (e.code, str(e)))


def main():
    if len(sys.argv) not in (2, 4):
        print("usage: client_test.py PORT [USERNAME PASSWORD]", file=sys.stderr)
        return 2
    try:
        run(int(sys.argv[1]), *sys.argv[2:])
    except Exception:  # noqa: BLE001 - report anything as a failure
        traceback.print_exc()
        print("FAILED", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
