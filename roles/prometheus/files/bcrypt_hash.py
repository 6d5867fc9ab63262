# Reads {"users": {name: password}, "seed": str, "cost": int} as JSON on stdin and prints
# {name: bcrypt hash} as JSON. The salt is derived from seed, name and password, so the hash is
# stable between runs (no change, no restart) and changes when the password does.
import base64
import hashlib
import json
import sys

try:
    import bcrypt
except ImportError:
    sys.exit("the python package 'bcrypt' is needed on the controller (pip install bcrypt)")

_STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TABLE = str.maketrans(_STD, _BCRYPT)

req = json.load(sys.stdin)
cost = int(req.get("cost", 12))
out = {}
for name, password in sorted(req["users"].items()):
    raw = hashlib.sha256(
        b"\0".join([b"aiplatform-web-auth", str(req.get("seed", "")).encode(), name.encode(), str(password).encode()])
    ).digest()[:16]
    salt = "$2b$%02d$%s" % (cost, base64.b64encode(raw).decode()[:22].translate(_TABLE))
    out[name] = bcrypt.hashpw(str(password).encode(), salt.encode()).decode()
    if not bcrypt.checkpw(str(password).encode(), out[name].encode()):
        sys.exit("bcrypt self-check failed for user %s" % name)
print(json.dumps(out))
