"""partitions: DynamoDB's per-partition throughput limits, for faultproxy.py.

DynamoDB serves each partition at most 1,000 WCU/s and 3,000 RCU/s, however
much capacity the table has; a hot key throttles long before the table
does.  DynamoDB Local has no such limit, so a claim like "one resource
sustains 20x what one partition can write" is only measured through this.

Model (each choice is what the tests and the benchmark rely on):
- One token bucket per (table, partition key value) and per kind (write,
  read).  A real partition holds many key values (and a write to a table
  with a GSI also spends the index's partition), so real DynamoDB may
  throttle sooner than this.
- Rate: "wcu" / "rcu" units per second (default 1000 / 3000).  Capacity:
  rate x "burst_s" (default 1 s: no burst beyond one second's units).
  DynamoDB keeps up to 300 s of unused *table* capacity as burst, but the
  per-partition limit is per second, so 1 s is the default for a hot key;
  a larger burst_s models a partition that saved up.  Buckets start full and refill
  continuously on a monotonic clock ("refill": false freezes it; then only
  POST /__proxy/partitions/advance moves it, so a test counts, not times).
- Writes are charged before forwarding, atomically with the check: a
  write is admitted iff its bucket holds its units (a write bigger than
  the whole bucket: iff the bucket is full; it then goes negative).  A
  refused request is not forwarded and consumes nothing.
- Reads cannot be priced before DynamoDB answers: a read is admitted iff
  its bucket is above 0 and is charged from the response; a read that runs
  the bucket negative makes the next ones throttle until it refills.
- Units: write = max(1, ceil(size / 1 KB)) per item; read = max(1,
  ceil(size / 4 KB)), halved unless ConsistentRead; transactions (Transact-
  WriteItems, TransactGetItems) count double, ConditionCheck as a write of
  its key.  Query: the items returned summed, then rounded; Scan: the same
  per partition of the items returned (Scan is never refused).
- Sizes (item_size below): the sum of attribute name lengths and value
  sizes as DynamoDB documents them (S: UTF-8 bytes, N: ~digits/2 + 1,
  B: raw bytes, BOOL/NULL: 1, L/M: 3 + contents + 1 per element, sets: the
  sum of their elements).  PutItem: the item; DeleteItem: its key (the
  proxy does not know the stored item); UpdateItem: key + the values and
  names the request carries (ExpressionAttributeValues / Names,
  AttributeUpdates), i.e. what the update writes, not the whole stored item
  afterwards: a lower bound of what DynamoDB charges.
- Not accounted: Query/Scan on an index (IndexName), index partitions of
  writes, PartiQL, control-plane calls, and tables whose key schema cannot
  be learnt.
- Counters, per partition: "requests" (requests that touched it, once per
  request), "throttled" (of those, refused because of it; a batch counts
  once per dry partition), "wcu" / "rcu" consumed.  "totals": requests
  accounted, requests refused whole, units.

The hash key of a table comes from "keys" in the control call, else from
one DescribeTable the proxy sends upstream itself (cached; not in the
proxy's stats; dropped when a CreateTable/DeleteTable for the table passes).

Throttled answers, as DynamoDB: HTTP 400 ProvisionedThroughputExceeded-
Exception ("mode": "provisioned", the default) or ThrottlingException
("mode": "on_demand"); a transaction is cancelled instead
(TransactionCanceledException, each item's CancellationReason Code
ProvisionedThroughputExceeded / ThrottlingError for the dry partitions,
None for the others, as the API reference lists them; "transactions":
"plain" answers the plain exception instead); a batch returns the items of
dry partitions as UnprocessedItems / UnprocessedKeys, and only when every
item is refused answers the exception.
"""

import base64
import json
import math
import re
import threading
import time
import uuid
import zlib
from decimal import Decimal, InvalidOperation

DDB_ERR = "com.amazonaws.dynamodb.v20120810#"
JSON_CT = "application/x-amz-json-1.0"

PTEE_MSG = ("The level of configured provisioned throughput for the table was "
            "exceeded. Consider increasing your provisioning level with the "
            "UpdateTable API.")
THROTTLE_MSG = ("Throughput exceeds the current capacity of your table or index. "
                "DynamoDB is automatically scaling your table or index so please "
                "try again shortly. If exceptions persist, check if you have a hot "
                "key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                "bp-partition-key-design.html.")

DEFAULTS = {"wcu": 1000, "rcu": 3000, "burst_s": 1, "mode": "provisioned",
            "refill": True, "transactions": "canceled", "keys": {}}

WRITE_OPS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
READ_OPS = ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems")


# -- sizes and units ------------------------------------------------------
# A malformed request is DynamoDB's to refuse: what is not the shape the
# API says counts as empty here, and the request is forwarded.

def _dict(x):
    return x if isinstance(x, dict) else {}


def _list(x):
    return x if isinstance(x, list) else []


def _n_size(s):
    digits = re.sub(r"[^0-9]", "", s.split("e")[0].split("E")[0]).strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def _b_size(s):
    try:
        return len(base64.b64decode(s))
    except (ValueError, TypeError):
        return len(s)


def value_size(v):
    if not isinstance(v, dict) or len(v) != 1:
        return 0
    (t, x), = v.items()
    if t == "S":
        return len(str(x).encode("utf-8"))
    if t == "N":
        return _n_size(str(x))
    if t == "B":
        return _b_size(str(x))
    if t in ("BOOL", "NULL"):
        return 1
    if t == "SS":
        return sum(len(str(e).encode("utf-8")) for e in _list(x))
    if t == "NS":
        return sum(_n_size(str(e)) for e in _list(x))
    if t == "BS":
        return sum(_b_size(str(e)) for e in _list(x))
    if t == "L":
        return 3 + sum(1 + value_size(e) for e in _list(x))
    if t == "M":
        return 3 + sum(1 + item_size({k: e}) for k, e in _dict(x).items())
    return 0


def item_size(item):
    if not isinstance(item, dict):
        return 0
    return sum(len(str(k).encode("utf-8")) + value_size(v) for k, v in item.items())


def update_size(req):
    n = item_size(req.get("Key"))
    for v in _dict(req.get("ExpressionAttributeValues")).values():
        n += value_size(v)
    for name in _dict(req.get("ExpressionAttributeNames")).values():
        n += len(str(name).encode("utf-8"))
    for name, upd in _dict(req.get("AttributeUpdates")).items():
        n += len(str(name).encode("utf-8"))
        if isinstance(upd, dict):
            n += value_size(upd.get("Value"))
    return n


def write_units(size):
    return max(1, math.ceil(size / 1024))


def read_units(size, consistent):
    u = max(1, math.ceil(size / 4096))
    return float(u) if consistent else u / 2


def key_text(v):
    """The partition key value as text: "S:abc", "N:1.5", "B:<base64>"."""
    if not isinstance(v, dict) or len(v) != 1:
        return None
    (t, x), = v.items()
    if t == "N":
        try:
            d = Decimal(str(x)).normalize()
            x = format(d, "f") if d == d.to_integral() else str(d)
        except InvalidOperation:
            pass
    if t not in ("S", "N", "B"):
        return None
    return "%s:%s" % (t, x)


# -- the buckets ------------------------------------------------------------

class Touch:
    """One item of a request on one partition."""
    __slots__ = ("index", "table", "key", "kind", "units", "factor", "consistent",
                 "keyattrs", "admitted")

    def __init__(self, index, table, key, kind, units=None, factor=1,
                 consistent=True, keyattrs=None):
        self.index, self.table, self.key, self.kind = index, table, key, kind
        self.units, self.factor, self.consistent = units, factor, consistent
        self.keyattrs = keyattrs
        self.admitted = True


class Partitions:
    def __init__(self):
        self.lock = threading.Lock()
        self.enabled = False
        self.config = dict(DEFAULTS)
        self.schema = {}          # table -> hash key attribute name
        self._fresh()

    def _fresh(self):
        self.offset = 0.0         # seconds added by /advance
        self.buckets = {}         # (table, key, kind) -> [tokens, last]
        self.counters = {}        # (table, key) -> dict
        self.totals = {"requests": 0, "throttled": 0, "wcu": 0.0, "rcu": 0.0}

    # -- control ------------------------------------------------------------

    def configure(self, obj):
        if not isinstance(obj, dict):
            raise ValueError("body must be a JSON object")
        unknown = set(obj) - set(DEFAULTS) - {"enabled"}
        if unknown:
            raise ValueError("unknown option(s): %s" % ", ".join(sorted(unknown)))
        cfg = dict(DEFAULTS)
        cfg.update(obj)
        cfg.pop("enabled", None)
        for k in ("wcu", "rcu", "burst_s"):
            v = cfg[k]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError("%s must be a positive number" % k)
        if cfg["mode"] not in ("provisioned", "on_demand"):
            raise ValueError("mode must be \"provisioned\" or \"on_demand\"")
        if cfg["transactions"] not in ("canceled", "plain"):
            raise ValueError("transactions must be \"canceled\" or \"plain\"")
        if not isinstance(cfg["refill"], bool):
            raise ValueError("refill must be a boolean")
        keys = cfg["keys"]
        if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
            raise ValueError("keys must be an object {table: hash key attribute}")
        enabled = obj.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError("enabled must be a boolean")
        with self.lock:
            self.config = cfg
            self.enabled = enabled
            self.schema = dict(keys)
            self._fresh()
        return self.describe()

    def disable(self):
        with self.lock:
            self.enabled = False
            self.config = dict(DEFAULTS)
            self.schema = {}
            self._fresh()

    def reset(self):
        with self.lock:
            self.schema = dict(self.config["keys"])
            self._fresh()

    def advance(self, seconds):
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ValueError("seconds must be a non-negative number")
        with self.lock:
            self.offset += seconds

    def describe(self):
        with self.lock:
            now = self._now()
            parts = {}
            for (table, key), c in self.counters.items():
                e = dict(c)
                for kind, name in (("w", "write_tokens"), ("r", "read_tokens")):
                    b = self.buckets.get((table, key, kind))
                    e[name] = self._level(b, kind, now) if b else self._capacity(kind)
                parts.setdefault(table, {})[key] = e
            cfg = dict(self.config)
            cfg["keys"] = dict(cfg["keys"])
            return {"enabled": self.enabled, "config": cfg, "clock": now,
                    "totals": dict(self.totals), "partitions": parts}

    # -- time and buckets (self.lock held) -----------------------------------

    def _now(self):
        base = time.monotonic() if self.config["refill"] else 0.0
        return base + self.offset

    def _rate(self, kind):
        return float(self.config["wcu" if kind == "w" else "rcu"])

    def _capacity(self, kind):
        return self._rate(kind) * float(self.config["burst_s"])

    def _level(self, b, kind, now):
        return min(self._capacity(kind), b[0] + self._rate(kind) * max(0.0, now - b[1]))

    def _bucket(self, table, key, kind, now):
        b = self.buckets.get((table, key, kind))
        if b is None:
            b = self.buckets[(table, key, kind)] = [self._capacity(kind), now]
        else:
            b[0] = self._level(b, kind, now)
            b[1] = now
        return b

    def _counter(self, table, key):
        c = self.counters.get((table, key))
        if c is None:
            c = self.counters[(table, key)] = {"requests": 0, "throttled": 0,
                                               "wcu": 0.0, "rcu": 0.0}
        return c

    # -- admission ----------------------------------------------------------

    def admit(self, touches):
        """Decides each touch (sets .admitted), charging admitted writes.
        all_or_nothing: the caller refuses the request if any is refused,
        so nothing is charged then.  Returns the refused touches."""
        return self._admit(touches, all_or_nothing=True)

    def admit_each(self, touches):
        return self._admit(touches, all_or_nothing=False)

    def _admit(self, touches, all_or_nothing):
        with self.lock:
            now = self._now()
            self.totals["requests"] += 1
            seen = set()
            for t in touches:
                if (t.table, t.key) not in seen:
                    seen.add((t.table, t.key))
                    self._counter(t.table, t.key)["requests"] += 1
            pending = {}          # (table, key) -> write units tentatively taken
            refused = []
            for t in touches:
                b = self._bucket(t.table, t.key, t.kind, now)
                if t.kind == "w":
                    took = pending.get((t.table, t.key), 0.0)
                    have = b[0] - took
                    cap = self._capacity("w")
                    ok = have >= t.units or (t.units > cap and have >= cap)
                    if ok:
                        pending[(t.table, t.key)] = took + t.units
                else:
                    ok = b[0] > 0
                t.admitted = ok
                if not ok:
                    refused.append(t)
            if refused and all_or_nothing:
                for t in touches:
                    t.admitted = False
            keys = set()
            for t in refused:
                keys.add((t.table, t.key))
            for k in keys:
                self.counters[k]["throttled"] += 1
            if refused and (all_or_nothing or len(refused) == len(touches)):
                self.totals["throttled"] += 1
            for t in touches:
                if t.admitted and t.kind == "w":
                    self.buckets[(t.table, t.key, "w")][0] -= t.units
                    self.counters[(t.table, t.key)]["wcu"] += t.units
                    self.totals["wcu"] += t.units
            return refused

    def charge_read(self, table, key, units):
        with self.lock:
            now = self._now()
            b = self._bucket(table, key, "r", now)
            b[0] -= units
            self._counter(table, key)["rcu"] += units
            self.totals["rcu"] += units

    # -- key schema ------------------------------------------------------------

    def hash_key(self, table, fetch):
        with self.lock:
            name = self.schema.get(table)
        if name is not None:
            return name
        name = fetch(table)
        if name is not None:
            with self.lock:
                self.schema[table] = name
        return name

    def forget(self, table):
        with self.lock:
            if table not in self.config["keys"]:
                self.schema.pop(table, None)

    # -- answers ----------------------------------------------------------------

    def error_response(self, short=None, message=None, extra=None):
        if short is None:
            if self.config["mode"] == "provisioned":
                short, message = "ProvisionedThroughputExceededException", PTEE_MSG
            else:
                short, message = "ThrottlingException", THROTTLE_MSG
        obj = {"__type": DDB_ERR + short}
        obj.update(extra or {})
        if "Message" not in obj:
            obj["message"] = message
        body = json.dumps(obj, separators=(",", ":")).encode()
        return (400, "Bad Request", [
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("Content-Type", JSON_CT),
            ("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF)),
        ], body)

    def cancelled_response(self, n, refused):
        if self.config["transactions"] == "plain":
            return self.error_response()
        if self.config["mode"] == "provisioned":
            code, msg = "ProvisionedThroughputExceeded", PTEE_MSG
        else:
            code, msg = "ThrottlingError", THROTTLE_MSG
        bad = {t.index for t in refused}
        reasons = [{"Code": code, "Message": msg} if i in bad else {"Code": "None"}
                   for i in range(n)]
        text = ("Transaction cancelled, please refer cancellation reasons for "
                "specific reasons [%s]" % ", ".join(r["Code"] for r in reasons))
        return self.error_response("TransactionCanceledException", None,
                                   {"CancellationReasons": reasons, "Message": text})


# -- reading a request -----------------------------------------------------

_EQ_RE = re.compile(r"([#:]?[A-Za-z0-9_.\-]+)\s*=\s*([#:]?[A-Za-z0-9_.\-]+)")


def query_key(req, hk):
    """The hash key value a Query names, or None."""
    names = _dict(req.get("ExpressionAttributeNames"))
    values = _dict(req.get("ExpressionAttributeValues"))
    expr = req.get("KeyConditionExpression")
    if isinstance(expr, str):
        for a, b in _EQ_RE.findall(expr):
            for n, v in ((a, b), (b, a)):
                if v.startswith(":") and not n.startswith(":"):
                    if names.get(n, n) == hk and v in values:
                        return values[v]
    kc = req.get("KeyConditions")
    if isinstance(kc, dict):
        c = kc.get(hk)
        if isinstance(c, dict) and c.get("ComparisonOperator") == "EQ":
            lst = _list(c.get("AttributeValueList"))
            if lst:
                return lst[0]
    return None


# -- a request through the simulator ----------------------------------------

def _ok_json(resp):
    """The decoded body of a 200 answer, else None."""
    if resp is None or resp[0] != 200:
        return None
    try:
        out = json.loads(resp[3] or b"{}")
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


def _rewrite(resp, out):
    """resp with body out (re-encoded; its checksum no longer holds)."""
    status, reason, headers, _ = resp
    hdrs = [(k, v) for k, v in headers if k.lower() != "x-amz-crc32"]
    return (status, reason, hdrs, json.dumps(out, separators=(",", ":")).encode())


def run(sim, op, req, body, forward, fetch):
    """Answers one data-plane request through the simulator: a throttling
    answer, or forward(body) (or a trimmed body) charged.  fetch(table)
    gives a table's hash key attribute (None: the table is not accounted)."""
    def hk(table):
        return sim.hash_key(table, fetch) if isinstance(table, str) else None

    if op in ("PutItem", "UpdateItem", "DeleteItem", "GetItem"):
        table = req.get("TableName")
        name = hk(table)
        src = _dict(req.get("Item") if op == "PutItem" else req.get("Key"))
        key = key_text(src.get(name)) if name else None
        if key is None:
            return forward(body)
        if op == "GetItem":
            consistent = bool(req.get("ConsistentRead"))
            t = Touch(0, table, key, "r", consistent=consistent)
        else:
            size = (item_size(src) if op != "UpdateItem" else update_size(req))
            t = Touch(0, table, key, "w", write_units(size))
        if sim.admit([t]):
            return sim.error_response()
        resp = forward(body)
        out = _ok_json(resp) if op == "GetItem" else None
        if out is not None:
            sim.charge_read(table, key, read_units(item_size(out.get("Item")), consistent))
        return resp

    if op == "Query":
        table = req.get("TableName")
        name = hk(table)
        if name is None or req.get("IndexName") is not None:
            return forward(body)
        key = key_text(query_key(req, name))
        if key is None:
            return forward(body)
        consistent = bool(req.get("ConsistentRead"))
        if sim.admit([Touch(0, table, key, "r", consistent=consistent)]):
            return sim.error_response()
        resp = forward(body)
        out = _ok_json(resp)
        if out is not None:
            size = sum(item_size(i) for i in _list(out.get("Items")))
            sim.charge_read(table, key, read_units(size, consistent))
        return resp

    if op == "Scan":
        table = req.get("TableName")
        name = hk(table)
        resp = forward(body)
        out = _ok_json(resp)
        if out is not None and name is not None and req.get("IndexName") is None:
            sizes = {}
            for i in _list(out.get("Items")):
                k = key_text(_dict(i).get(name))
                if k is not None:
                    sizes[k] = sizes.get(k, 0) + item_size(i)
            for k, size in sizes.items():
                sim.charge_read(table, k, read_units(size, bool(req.get("ConsistentRead"))))
        return resp

    if op == "TransactWriteItems" or op == "TransactGetItems":
        items = req.get("TransactItems")
        if not isinstance(items, list):
            return forward(body)
        touches = []
        for i, ti in enumerate(items):
            ti = _dict(ti)
            if len(ti) != 1:
                continue
            kind, spec = next(iter(ti.items()))
            spec = _dict(spec)
            table = spec.get("TableName")
            name = hk(table)
            src = _dict(spec.get("Item") if kind == "Put" else spec.get("Key"))
            key = key_text(src.get(name)) if name else None
            if key is None:
                continue
            if op == "TransactGetItems":
                touches.append(Touch(i, table, key, "r", factor=2))
            else:
                size = update_size(spec) if kind == "Update" else item_size(src)
                touches.append(Touch(i, table, key, "w", 2 * write_units(size)))
        refused = sim.admit(touches) if touches else []
        if refused:
            return sim.cancelled_response(len(items), refused)
        resp = forward(body)
        out = _ok_json(resp) if op == "TransactGetItems" else None
        if out is not None:
            got = _list(out.get("Responses"))
            for t in touches:
                item = _dict(got[t.index]).get("Item") if t.index < len(got) else None
                sim.charge_read(t.table, t.key, 2 * read_units(item_size(item), True))
        return resp

    if op == "BatchWriteItem" or op == "BatchGetItem":
        ri = req.get("RequestItems")
        if not isinstance(ri, dict):
            return forward(body)
        touches, untouched = [], 0
        for table, spec in ri.items():
            name = hk(table)
            entries = spec if op == "BatchWriteItem" else _dict(spec).get("Keys")
            for i, e in enumerate(entries if isinstance(entries, list) else []):
                if op == "BatchWriteItem":
                    put, dele = _dict(e).get("PutRequest"), _dict(e).get("DeleteRequest")
                    src = _dict(_dict(put).get("Item") if put else _dict(dele).get("Key"))
                else:
                    src = _dict(e)
                key = key_text(src.get(name)) if name else None
                if key is None:
                    untouched += 1
                    continue
                if op == "BatchWriteItem":
                    t = Touch(i, table, key, "w", write_units(item_size(src)))
                else:
                    t = Touch(i, table, key, "r", keyattrs=src,
                              consistent=bool(_dict(spec).get("ConsistentRead")))
                touches.append(t)
        refused = sim.admit_each(touches) if touches else []
        if refused and len(refused) == len(touches) and untouched == 0:
            return sim.error_response()
        left = {}
        if refused:
            gone = {(t.table, t.index) for t in refused}
            for table, spec in list(ri.items()):
                if op == "BatchWriteItem":
                    keep = [e for i, e in enumerate(spec) if (table, i) not in gone]
                    rest = [e for i, e in enumerate(spec) if (table, i) in gone]
                    if rest:
                        left[table] = rest
                    ri[table] = keep
                else:
                    keys = spec["Keys"]
                    rest = [e for i, e in enumerate(keys) if (table, i) in gone]
                    if rest:
                        left[table] = dict(spec, Keys=rest)
                    spec["Keys"] = [e for i, e in enumerate(keys) if (table, i) not in gone]
                if not ri[table] or (op == "BatchGetItem" and not ri[table]["Keys"]):
                    del ri[table]
            body = json.dumps(req).encode()
        resp = forward(body)
        out = _ok_json(resp)
        if out is None:
            return resp
        if op == "BatchGetItem":
            got = _dict(out.get("Responses"))
            for t in touches:
                if not t.admitted:
                    continue
                size = 0
                for item in _list(got.get(t.table)):
                    if all(_dict(item).get(k) == v for k, v in t.keyattrs.items()):
                        size = item_size(item)
                        break
                sim.charge_read(t.table, t.key, read_units(size, t.consistent))
        if left:
            field = "UnprocessedItems" if op == "BatchWriteItem" else "UnprocessedKeys"
            mine = _dict(out.get(field))
            for table, rest in left.items():
                if table not in mine:
                    mine[table] = rest
                elif op == "BatchWriteItem":
                    mine[table] = _list(mine[table]) + rest
                else:
                    was = _dict(mine[table])
                    mine[table] = dict(was, Keys=_list(was.get("Keys")) + rest["Keys"])
            out[field] = mine
            return _rewrite(resp, out)
        return resp

    return forward(body)

