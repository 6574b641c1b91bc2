#!/usr/bin/env python3
"""Fuzzes partitions.run with malformed requests and answers: any shape a
client or DynamoDB could send must be forwarded or refused, never raise
(an exception would drop the client's connection instead of letting
DynamoDB Local answer its ValidationException).

    python3 tests/faultproxy/fuzz_partitions.py [SEED] [ROUNDS]

Exits 1 when any round raised (the first few are printed)."""
import json
import os
import random
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import partitions as P  # noqa: E402

random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
atoms = [None, True, 1, 1.5, "x", "pk", "#k", ":v", "S", "N", "EQ", "pk = :v", "#k = :v", [], {}]
keys = ["TableName","Item","Key","pk","S","N","B","L","M","SS","NS","BS","BOOL","NULL","PutRequest","DeleteRequest",
        "RequestItems","Keys","TransactItems","Put","Update","Delete","ConditionCheck","Get","KeyConditionExpression",
        "ExpressionAttributeNames","ExpressionAttributeValues","KeyConditions","ComparisonOperator","AttributeValueList",
        "ConsistentRead","IndexName","AttributeUpdates","Value","T",":v","#k"]
def gen(d=0):
    r = random.random()
    if d > 5 or r < 0.3: return random.choice(atoms)
    if r < 0.6: return {random.choice(keys): gen(d+1) for _ in range(random.randint(0,4))}
    return [gen(d+1) for _ in range(random.randint(0,3))]
ops = ["PutItem","UpdateItem","DeleteItem","GetItem","Query","Scan","BatchWriteItem","BatchGetItem","TransactWriteItems","TransactGetItems"]
sim = P.Partitions(); sim.configure({"wcu": 1, "rcu": 1, "refill": False})
def fwd(body):
    out = gen()
    return (200, "OK", [], json.dumps(out).encode()) if random.random() < .7 else (400, "x", [], b"{}")
n = 0
for i in range(ROUNDS):
    req = gen()
    if not isinstance(req, dict): req = {"TableName": "T", "x": req}
    if random.random() < .5: req["TableName"] = "T"
    op = random.choice(ops)
    try:
        P.run(sim, op, req, json.dumps(req).encode(), fwd, lambda t: random.choice(["pk", "T", None]))
    except Exception as e:
        n += 1
        if n < 6: print(op, json.dumps(req)[:300], repr(e))
print("shapeless requests: %d rounds, %d raised" % (ROUNDS, n))
failed = n
def hole(): return gen(3) if random.random() < .3 else None
def av(): return random.choice([{"S": "a"}, {"N": "1"}, {"B": "QQ=="}, hole(), {"S": hole()}, {"N": "x1e5"}, {"M": hole()}, {"L": hole()}, {"SS": hole()}])
def maybe(v): return hole() if random.random() < .2 else v
def tmpl(op):
    key = maybe({"pk": av(), "sk": av()})
    if op == "Query":
        return {"TableName": maybe("T"), "KeyConditionExpression": maybe("#k = :v"), "ExpressionAttributeNames": maybe({"#k": maybe("pk")}),
                "ExpressionAttributeValues": maybe({":v": av()}), "KeyConditions": maybe({"pk": maybe({"ComparisonOperator": maybe("EQ"), "AttributeValueList": maybe([av()])})})}
    if op in ("BatchWriteItem",):
        return {"RequestItems": maybe({"T": maybe([maybe({"PutRequest": maybe({"Item": key})}), maybe({"DeleteRequest": maybe({"Key": key})})])})}
    if op == "BatchGetItem":
        return {"RequestItems": maybe({"T": maybe({"Keys": maybe([key, key]), "ConsistentRead": hole()})})}
    if op.startswith("Transact"):
        return {"TransactItems": maybe([maybe({random.choice(["Put","Update","Delete","ConditionCheck","Get"]): maybe({"TableName": "T", "Item": key, "Key": key, "ExpressionAttributeValues": maybe({":a": av()}), "ExpressionAttributeNames": hole(), "AttributeUpdates": hole()})})])}
    return {"TableName": "T", "Item": key, "Key": key, "ExpressionAttributeValues": maybe({":a": av()}), "ExpressionAttributeNames": maybe({"#a": hole()}), "AttributeUpdates": maybe({"a": maybe({"Value": av()})})}
def fwd2(body):
    r = random.random()
    if r < .5: return (200, "OK", [], json.dumps({"Item": maybe({"pk": av()}), "Items": maybe([maybe({"pk": av()})]), "Responses": hole() if random.random()<.5 else maybe([maybe({"Item": maybe({"pk": av()})})]), "UnprocessedItems": hole(), "UnprocessedKeys": hole()}).encode())
    return fwd(body)
n = 0
for i in range(ROUNDS):
    op = random.choice(ops)
    req = tmpl(op)
    if random.random() < 0.05: sim.reset()
    try:
        P.run(sim, op, req, json.dumps(req).encode(), fwd2, lambda t: "pk")
    except Exception as e:
        n += 1
        if n < 8: print(op, json.dumps(req)[:400], repr(e))
print("API-shaped requests: %d rounds, %d raised" % (ROUNDS, n))
sys.exit(1 if failed or n else 0)
