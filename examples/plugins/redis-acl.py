#!/usr/bin/env python3
"""keyshift exec plugin (protocol 1): rotates the password of a Redis ACL user.

A worked example of docs/plugins.md. keyshift runs this program once per step
with the request on stdin; it prints one JSON reply on stdout.

Environment (set in the plugin config's "env"):
  REDIS_ADDR                 host:port of Redis (default 127.0.0.1:6379)
  REDIS_USER                 the ACL user whose passwords rotate (required)
  REDIS_ADMIN_USER           admin user to log in as (default: no AUTH)
  REDIS_ADMIN_PASSWORD_FILE  file holding the admin's password (never put a
                             password in the config's env: it is stored in clear)
  REDIS_TIMEOUT              seconds per connection (default 5)

How it keeps secrets out of sight: it speaks RESP over a raw socket, so no
password is ever on a command line; the user gets passwords only as SHA-256
digests (ACL SETUSER u #<hex> to add, !<hex> to remove); the plaintext
travels only in the AUTH that verifies. Errors never quote a value.

Every step is idempotent: enable checks the digest is already there, revoke
that it is already gone, so running a step twice has the effect of once.
"""

import hashlib
import json
import os
import secrets
import socket
import sys

PROTOCOL = 1


class Transient(Exception):
    """Redis could not be asked (retrying may help)."""


class Failed(Exception):
    """Redis answered, and the step cannot succeed as asked."""


class RedisError(Exception):
    """An error reply (-ERR ..., -WRONGPASS ...)."""


class Resp:
    """The smallest RESP2 client this plugin needs: commands in, replies out."""

    def __init__(self, addr, timeout):
        host, _, port = addr.rpartition(":")
        try:
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        except (OSError, ValueError) as e:
            raise Transient(f"cannot connect to redis at {addr}: {e.__class__.__name__}") from None
        self.buf = self.sock.makefile("rb")

    def close(self):
        self.buf.close()
        self.sock.close()

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        try:
            self.sock.sendall(b"".join(out))
            reply = self._read()
        except OSError as e:
            raise Transient(f"redis connection failed: {e.__class__.__name__}") from None
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def _read(self):
        line = self.buf.readline()
        if not line.endswith(b"\r\n"):
            raise OSError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.buf.read(n + 2)
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise OSError("unexpected reply type")


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise Failed(f"the plugin config's env lacks {name}")
    return value


def settings():
    return {
        "addr": env("REDIS_ADDR", "127.0.0.1:6379"),
        "user": env("REDIS_USER"),
        "timeout": float(env("REDIS_TIMEOUT", "5")),
        "admin_user": os.environ.get("REDIS_ADMIN_USER"),
        "admin_password_file": os.environ.get("REDIS_ADMIN_PASSWORD_FILE"),
    }


def admin(s):
    """A connection logged in as the admin (or not logged in)."""
    conn = Resp(s["addr"], s["timeout"])
    if s["admin_password_file"]:
        with open(s["admin_password_file"], encoding="utf-8") as f:
            password = f.read().strip()
        try:
            conn.call("AUTH", s["admin_user"] or "default", password)
        except RedisError:
            conn.close()
            raise Failed("the admin credential was refused") from None
    return conn


def user_info(conn, user):
    """ACL GETUSER as {"flags": [...], "passwords": [hex digests]}, or None."""
    try:
        reply = conn.call("ACL", "GETUSER", user)
    except RedisError as e:
        raise classify(e, "ACL GETUSER") from None
    if reply is None:
        return None
    return dict(zip(reply[::2], reply[1::2]))


def existing_user(conn, user):
    info = user_info(conn, user)
    if info is None:
        raise Failed(f"redis user {user} does not exist")
    if "nopass" in info.get("flags", []):
        raise Failed(f"redis user {user} is nopass: give it a password first")
    return info


def classify(e, what):
    code = str(e).split(" ", 1)[0]
    if code in ("LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY"):
        return Transient(f"{what}: redis is busy ({code})")
    if code in ("NOPERM", "NOAUTH"):
        return Failed(f"{what}: the admin lacks permission ({code})")
    return Failed(f"{what} failed ({code})")


def logs_in(s, value):
    """AUTH as the user on a fresh connection: True, False, or Transient."""
    conn = Resp(s["addr"], s["timeout"])
    try:
        conn.call("AUTH", s["user"], value)
        return True
    except RedisError as e:
        if str(e).startswith("WRONGPASS"):
            return False
        raise classify(e, "AUTH") from None
    finally:
        conn.close()


def digest(value):
    return hashlib.sha256(value.encode()).hexdigest()


def precheck(s, req):
    conn = admin(s)
    try:
        existing_user(conn, s["user"])
    finally:
        conn.close()
    current = req.get("current")
    if current is not None and not logs_in(s, current):
        raise Failed("the current credential no longer logs in")
    return {}


def generate(s, req):
    # 256 random bits, 43 URL-safe characters. Replying {"ok": true} without
    # a value would let keyshift generate them instead.
    return {"value": secrets.token_urlsafe(32)}


def enable(s, req):
    want = digest(req["value"])
    conn = admin(s)
    try:
        info = existing_user(conn, s["user"])
        if want in info.get("passwords", []):
            return {}  # already accepted: enabling again changes nothing
        try:
            # Only the password modifier: never `on`, keys or commands,
            # which are the operator's to set.
            conn.call("ACL", "SETUSER", s["user"], "#" + want)
        except RedisError as e:
            raise classify(e, "ACL SETUSER") from None
    finally:
        conn.close()
    return {}


def revoke(s, req):
    gone = digest(req["value"])
    conn = admin(s)
    try:
        info = user_info(conn, s["user"])
        if info is None or gone not in info.get("passwords", []):
            return {}  # already refused: revoking again changes nothing
        try:
            conn.call("ACL", "SETUSER", s["user"], "!" + gone)
        except RedisError as e:
            if "does not exist" not in str(e):  # removed concurrently: fine
                raise classify(e, "ACL SETUSER") from None
    finally:
        conn.close()
    return {}


def verify(s, req):
    return {"verdict": "accepted" if logs_in(s, req["value"]) else "refused"}


def usage(s, req):
    # Redis does not tell which password a connection logged in with.
    return {"uses": None}


STEPS = {
    "precheck": precheck,
    "generate": generate,
    "enable": enable,
    "revoke": revoke,
    "verify": verify,
    "usage": usage,
}


def reply(obj, code=0):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def main():
    try:
        req = json.load(sys.stdin)
    except ValueError:
        reply({"ok": False, "error": "the request is not JSON", "transient": False})
    if req.get("protocol") != PROTOCOL:
        reply({"ok": False, "error": "unsupported protocol version", "transient": False})
    step = STEPS.get(req.get("step"))
    if step is None:
        reply({"ok": False, "error": "unknown step", "transient": False})
    try:
        result = step(settings(), req)
    except Transient as e:
        reply({"ok": False, "error": str(e), "transient": True})
    except Failed as e:
        reply({"ok": False, "error": str(e), "transient": False})
    except KeyError as e:
        reply({"ok": False, "error": f"the request lacks {e.args[0]}", "transient": False})
    reply({"ok": True, **result})


if __name__ == "__main__":
    main()
