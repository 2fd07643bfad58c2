#!/usr/bin/env python3
"""Member-lifecycle scenarios against a real Vaultwarden and a real slapd.

Driven by scripts/real-vaultwarden.sh (read its header for how to run it). Standard library
only. Starts slapd and Vaultwarden on free loopback ports in a temporary directory, provisions
an owner, an organization and its API key through Vaultwarden's own API, runs
`directory-connector sync` after each directory change and prints one line per scenario with
what Vaultwarden's database (users_organizations, groups_users) and API answer.

Vaultwarden keeps a revoked membership's status as the active status minus 128 (Invited 0 ->
-128, Accepted 1 -> -127, Confirmed 2 -> -126: ACTIVATE_REVOKE_DIFF in
src/db/models/organization.rs); its API shows any of them as -1 (Revoked). Both are printed.
"""

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = "dc=example,dc=com"
ADMIN_DN = "cn=admin," + BASE
ADMIN_PW = "AdminPw-123"
OWNER = "owner@example.com"
OWNER_PW = "Owner-Master-Password-1"
# The test schema of tests/support/slapd.rs: plain LDAP entries get an AD-style userAccountControl.
EXTRA_SCHEMA = (
    "attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' "
    "EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )\n"
    "objectclass ( 1.3.6.1.4.1.55555.1.1 NAME 'dcTestAccount' AUXILIARY MAY userAccountControl )\n"
)
# Ten people (so one departure stays under the default removal guards), two groups.
FILLERS = ["erin", "frank", "grace", "heidi", "ivan", "judy"]
PEOPLE = ["alice", "bob", "carol", "dave"] + FILLERS
ENG = ["alice", "bob", "carol", "dave"]

VERBOSE = os.environ.get("VERBOSE") == "1"


def log(msg):
    if VERBOSE:
        print("  .. " + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, input_text="", env=None, check=True):
    p = subprocess.run(cmd, input=input_text, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def user_dn(uid, ou="ou=People"):
    return f"uid={uid},{ou},{BASE}"


def person(uid, ou="ou=People", uac=512):
    return (
        f"dn: {user_dn(uid, ou)}\nobjectClass: inetOrgPerson\nobjectClass: dcTestAccount\n"
        f"uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@example.com\nuserAccountControl: {uac}\n\n"
    )


def group(cn, uids):
    s = f"dn: cn={cn},ou=Groups,{BASE}\nobjectClass: groupOfNames\ncn: {cn}\n"
    s += "".join(f"member: {user_dn(u)}\n" for u in uids)
    return s + "\n"


class Slapd:
    """The recipe of tests/support/slapd.rs without TLS: slapadd, then slapd on loopback."""

    def __init__(self, root):
        self.dir = os.path.join(root, "slapd")
        os.makedirs(os.path.join(self.dir, "db"))
        d = self.dir
        with open(os.path.join(d, "extra.schema"), "w") as f:
            f.write(EXTRA_SCHEMA)
        conf = f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include {d}/extra.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
database mdb
maxsize 1073741824
dbnosync
suffix "{BASE}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PW}
directory {d}/db
index objectClass eq
access to attrs=userPassword by anonymous auth by * none
access to * by * read
"""
        with open(os.path.join(d, "slapd.conf"), "w") as f:
            f.write(conf)
        ldif = (
            f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"
            f"dn: ou=People,{BASE}\nobjectClass: organizationalUnit\nou: People\n\n"
            f"dn: ou=Moved,ou=People,{BASE}\nobjectClass: organizationalUnit\nou: Moved\n\n"
            f"dn: ou=Groups,{BASE}\nobjectClass: organizationalUnit\nou: Groups\n\n"
            + "".join(person(u) for u in PEOPLE)
            + group("eng", ENG)
            + group("staff", PEOPLE)
        )
        with open(os.path.join(d, "data.ldif"), "w") as f:
            f.write(ldif)
        slapd_bin = "/usr/sbin/slapd" if os.path.exists("/usr/sbin/slapd") else "slapd"
        slapadd = "/usr/sbin/slapadd" if os.path.exists("/usr/sbin/slapadd") else "slapadd"
        run([slapadd, "-f", f"{d}/slapd.conf", "-l", f"{d}/data.ldif", "-q"])
        for _ in range(4):
            self.port = free_port()
            started = subprocess.run(
                [slapd_bin, "-f", f"{d}/slapd.conf", "-h", f"ldap://127.0.0.1:{self.port}/"]
            ).returncode == 0
            if started and self._ready():
                return
            self.stop()
        raise SystemExit("slapd did not start")

    def _ready(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            p = subprocess.run(
                ["ldapsearch", "-x", "-H", f"ldap://127.0.0.1:{self.port}", "-b", "", "-s", "base"],
                capture_output=True,
            )
            if p.returncode == 0:
                return True
            time.sleep(0.05)
        return False

    def modify(self, ldif):
        run(["ldapmodify", "-x", "-H", f"ldap://127.0.0.1:{self.port}", "-D", ADMIN_DN, "-w", ADMIN_PW], ldif)

    def stop(self):
        try:
            with open(os.path.join(self.dir, "slapd.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


class Vaultwarden:
    def __init__(self, binary, root):
        self.data = os.path.join(root, "vw-data")
        os.makedirs(self.data)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            DATA_FOLDER=self.data,
            ROCKET_ADDRESS="127.0.0.1",
            ROCKET_PORT=str(self.port),
            DOMAIN=self.url,
            ORG_GROUPS_ENABLED="true",
            WEB_VAULT_ENABLED="false",
            SIGNUPS_ALLOWED="true",
            LOGIN_RATELIMIT_MAX_BURST="100",
            I_REALLY_WANT_VOLATILE_STORAGE="true",
            LOG_LEVEL="warn",
        )
        self.log_path = os.path.join(root, "vaultwarden.log")
        self.log = open(self.log_path, "w")
        # its own directory as cwd, so that no .env of the caller is read
        self.proc = subprocess.Popen([binary], env=env, cwd=root, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"vaultwarden exited ({self.proc.returncode}), see {self.log_path}")
            try:
                if self.request("GET", "/alive")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("vaultwarden did not answer /alive")

    def request(self, method, path, body=None, token=None, form=False):
        # Vaultwarden logs an ERROR for a token request without it (and answers anyway)
        headers = {"Bitwarden-Client-Version": "2026.1.0"}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = "Bearer " + token
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw.strip() else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def ok(self, method, path, body=None, token=None, form=False):
        status, js = self.request(method, path, body, token, form)
        if status != 200:
            raise SystemExit(f"{method} {path} -> {status}: {js}")
        return js

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def provision(vw):
    """Owner account, organization and its API key. Encrypted values are opaque to Vaultwarden."""
    enc = "2.AAAAAAAAAAAAAAAAAAAAAA==|BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB|CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC="
    master_key = hashlib.pbkdf2_hmac("sha256", OWNER_PW.encode(), OWNER.encode(), 600000)
    mp_hash = base64.b64encode(hashlib.pbkdf2_hmac("sha256", master_key, OWNER_PW.encode(), 1)).decode()
    vw.ok(
        "POST",
        "/identity/accounts/register",
        {
            "email": OWNER,
            "name": "Owner",
            "masterPasswordHash": mp_hash,
            "masterPasswordHint": None,
            "key": enc,
            "kdf": 0,
            "kdfIterations": 600000,
            "keys": {"publicKey": "MIIBIjANBgkq", "encryptedPrivateKey": enc},
        },
    )
    tok = vw.ok(
        "POST",
        "/identity/connect/token",
        {
            "grant_type": "password",
            "username": OWNER,
            "password": mp_hash,
            "scope": "api offline_access",
            "client_id": "cli",
            "deviceType": "8",
            "deviceIdentifier": "0d5b5e47-6a7e-4c1c-9a3c-5a0e3d7c1f11",
            "deviceName": "real-vaultwarden-script",
        },
        form=True,
    )["access_token"]
    org = vw.ok(
        "POST",
        "/api/organizations",
        {
            "name": "Lifecycle Test",
            "billingEmail": OWNER,
            "collectionName": enc,
            "key": enc,
            "keys": {"publicKey": "MIIBIjANBgkq", "encryptedPrivateKey": enc},
            "planType": 0,
        },
        token=tok,
    )
    org_id = org["id"]
    api_key = vw.ok("POST", f"/api/organizations/{org_id}/api-key", {"masterPasswordHash": mp_hash}, token=tok)["apiKey"]
    return tok, org_id, api_key


class Connector:
    def __init__(self, binary, root, vw, slapd, org_id, api_key):
        self.bin = binary
        self.data = os.path.join(root, "dc-data")
        self.env = dict(os.environ)
        self.env.update(
            BW_CLIENTID=f"organization.{org_id}",
            BW_CLIENTSECRET=api_key,
            DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS="true",
            DIRECTORY_CONNECTOR_DATA_DIR=self.data,
        )
        for key, value in [
            ("server.url", vw.url),
            ("directory.type", "ldap"),
            ("ldap.hostname", "127.0.0.1"),
            ("ldap.port", str(slapd.port)),
            ("ldap.root_path", BASE),
            ("ldap.username", ADMIN_DN),
            ("sync.user_path", "ou=People"),
            ("sync.group_path", "ou=Groups"),
            ("sync.remove_missing_users", "true"),
            ("sync.remove_disabled", "true"),
            ("sync.protected_emails", OWNER),
        ]:
            self.dc("config", "set", key, value)
        self.dc("config", "set", "ldap.password", input_text=ADMIN_PW)
        self.dc("login")
        self.runs = 0

    def dc(self, *args, input_text="", check=True):
        return run([self.bin, "--data-dir", self.data, *args], input_text, env=self.env, check=check)

    def sync(self):
        self.runs += 1
        p = self.dc("--json", "sync", check=False)
        with open(os.path.join(os.path.dirname(self.data), f"sync-{self.runs}.json"), "w") as f:
            f.write(p.stdout + "\n--- stderr ---\n" + p.stderr)
        log(f"sync {self.runs}: exit {p.returncode}")
        return SyncResult(p.returncode, p.stdout)


class SyncResult:
    """A sync's exit code and what its JSON says it did (plan actions and counts)."""

    def __init__(self, code, stdout):
        self.code = code
        try:
            j = json.loads(stdout)
        except ValueError:
            self.said = "no JSON"
            return
        acts = []
        for m in j.get("plan", {}).get("members", []):
            a = m["action"]
            acts.append(f"{m['email'].split('@')[0]} {a if isinstance(a, str) else ' '.join(f'{k}:{v}' for k, v in a.items())}")
        counts = ",".join(f"{k}={j.get(k)}" for k in ("invited", "removed", "revoked", "restored", "renamed"))
        groups = len(j.get("plan", {}).get("groups", []))
        self.said = f"[connector: {'; '.join(acts) or 'no member change'}; {groups} group(s) sent; {counts}]"

    def __str__(self):
        return f"sync exit {self.code} {self.said}"


def state(vw, tok, org_id):
    """email -> (membership id, raw status, API status, externalId, sorted group names)."""
    db = sqlite3.connect(os.path.join(vw.data, "db.sqlite3"))
    rows = db.execute(
        "SELECT u.email, uo.uuid, uo.status, uo.external_id FROM users_organizations uo "
        "JOIN users u ON u.uuid = uo.user_uuid WHERE uo.org_uuid = ?",
        (org_id,),
    ).fetchall()
    groups = {}
    for mid, name in db.execute(
        "SELECT gu.users_organizations_uuid, g.name FROM groups_users gu JOIN groups g ON g.uuid = gu.groups_uuid"
    ):
        groups.setdefault(mid, []).append(name)
    db.close()
    api = {}
    for m in vw.ok("GET", f"/api/organizations/{org_id}/users?includeGroups=true", token=tok)["data"]:
        api[m["email"]] = m["status"]
    return {
        email: (mid, status, api.get(email), ext, sorted(groups.get(mid, [])))
        for email, mid, status, ext in rows
    }


def describe(st, email):
    if email not in st:
        return f"{email}: no membership"
    mid, raw, api, ext, groups = st[email]
    return f"{email}: id {mid[:8]} status {raw} (API {api}) groups {groups or '[]'} externalId {ext}"


def main():
    vw_bin, dc_bin = sys.argv[1], sys.argv[2]
    root = tempfile.mkdtemp(prefix="dc-real-vw-")
    keep = os.environ.get("KEEP") == "1"
    slapd = vw = None
    results = []
    try:
        slapd = Slapd(root)
        vw = Vaultwarden(vw_bin, root)
        tok, org_id, api_key = provision(vw)
        version = run([vw_bin, "--version"], check=False).stdout.splitlines()[0:1] or ["?"]
        print(f"{version[0]} at {vw.url}, slapd at ldap://127.0.0.1:{slapd.port}, work dir {root}")
        dc = Connector(dc_bin, root, vw, slapd, org_id, api_key)

        rc = dc.sync()
        s0 = state(vw, tok, org_id)
        print(f"initial {rc}, {len(s0)} memberships (owner + {len(s0) - 1}); "
              + describe(s0, "alice@example.com"))

        # 1. leaver: the entry is deleted and (as AD does) taken out of its groups
        slapd.modify(
            f"dn: {user_dn('alice')}\nchangetype: delete\n\n"
            f"dn: cn=eng,ou=Groups,{BASE}\nchangetype: modify\ndelete: member\nmember: {user_dn('alice')}\n\n"
            f"dn: cn=staff,ou=Groups,{BASE}\nchangetype: modify\ndelete: member\nmember: {user_dn('alice')}\n\n"
        )
        rc = dc.sync()
        s1 = state(vw, tok, org_id)
        a0, a1 = s0["alice@example.com"], s1["alice@example.com"]
        results.append(
            f"1 leaver:   {rc}; {describe(s1, 'alice@example.com')}; "
            f"same id {a1[0] == a0[0]}; revoked {a1[2] == -1}; group rows kept {a1[4] == a0[4]} (before {a0[4]})"
        )

        # 2. returner: the same entry (same DN and email) comes back, in its groups again
        slapd.modify(
            person("alice").replace("\n", "\nchangetype: add\n", 1)
            + f"dn: cn=eng,ou=Groups,{BASE}\nchangetype: modify\nadd: member\nmember: {user_dn('alice')}\n\n"
            f"dn: cn=staff,ou=Groups,{BASE}\nchangetype: modify\nadd: member\nmember: {user_dn('alice')}\n\n"
        )
        rc = dc.sync()
        s2 = state(vw, tok, org_id)
        a2 = s2["alice@example.com"]
        results.append(
            f"2 returner: {rc}; {describe(s2, 'alice@example.com')}; "
            f"same id {a2[0] == a0[0]}; restored {a2[1] == a0[1]}; back in groups {a2[4] == a0[4]}"
        )

        # 3. disabled (userAccountControl 514; its group membership stays), then enabled again
        uac = lambda v: f"dn: {user_dn('bob')}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {v}\n\n"
        slapd.modify(uac(514))
        rc = dc.sync()
        s3 = state(vw, tok, org_id)
        b0, b3 = s0["bob@example.com"], s3["bob@example.com"]
        results.append(f"3 disabled: {rc}; {describe(s3, 'bob@example.com')}; same id {b3[0] == b0[0]}; "
                       f"revoked {b3[2] == -1}; group rows kept {b3[4] == b0[4]} (before {b0[4]})")
        slapd.modify(uac(512))
        rc = dc.sync()
        s3b = state(vw, tok, org_id)
        b4 = s3b["bob@example.com"]
        results.append(
            f"3 enabled:  {rc}; {describe(s3b, 'bob@example.com')}; same id {b4[0] == b0[0]}; "
            f"restored {b4[1] == b0[1]}; back in groups {b4[4] == b0[4]}"
        )

        # 4. moved: modrdn to ou=Moved,ou=People (same email); the groups follow (as AD's links do)
        old, new = user_dn("carol"), user_dn("carol", "ou=Moved,ou=People")
        slapd.modify(
            f"dn: {old}\nchangetype: modrdn\nnewrdn: uid=carol\ndeleteoldrdn: 1\nnewsuperior: ou=Moved,ou=People,{BASE}\n\n"
            + "".join(
                f"dn: cn={g},ou=Groups,{BASE}\nchangetype: modify\ndelete: member\nmember: {old}\n-\nadd: member\nmember: {new}\n\n"
                for g in ("eng", "staff")
            )
        )
        rc = dc.sync()
        s4 = state(vw, tok, org_id)
        c0, c4 = s0["carol@example.com"], s4["carol@example.com"]
        results.append(
            f"4 moved:    {rc}; {describe(s4, 'carol@example.com')}; same id {c4[0] == c0[0]}; "
            f"externalId is the new DN {c4[3] == new}; not revoked {c4[2] != -1}; groups kept {c4[4] == c0[4]}"
        )

        # 5. the member API: Vaultwarden's public API has only the import
        bearer = vw.ok(
            "POST",
            "/identity/connect/token",
            {
                "grant_type": "client_credentials",
                "client_id": f"organization.{org_id}",
                "client_secret": api_key,
                "scope": "api.organization",
                "deviceType": "21",
                "deviceIdentifier": "c7f3a0b2-3f0e-4c2f-8a40-2b7e1d9f6a10",
                "deviceName": "real-vaultwarden-script",
            },
            form=True,
        )["access_token"]
        get_members = vw.request("GET", "/api/public/members", token=bearer)[0]
        get_member = vw.request("GET", f"/api/public/members/{c0[0]}", token=bearer)[0]
        revoke = vw.request("POST", f"/api/public/members/{c0[0]}/revoke", token=bearer)[0]
        restore = vw.request("POST", f"/api/public/members/{c0[0]}/restore", token=bearer)[0]
        groups = vw.request("GET", "/api/public/groups", token=bearer)[0]
        results.append(
            f"5 member API: GET /api/public/members -> {get_members}; GET /api/public/members/<id> -> {get_member}; "
            f"POST .../<id>/revoke -> {revoke}; POST .../<id>/restore -> {restore}; GET /api/public/groups -> {groups}"
        )

        # 6. Vaultwarden alone (no connector): an import that lists dave with deleted: true and
        # no groups, then one that lists him again; do his group rows survive the revoke?
        d0 = state(vw, tok, org_id)["dave@example.com"]
        def raw_import(deleted):
            body = {"members": [{"email": "dave@example.com", "externalId": d0[3], "deleted": deleted}],
                    "groups": [], "overwriteExisting": False, "largeImport": False}
            return vw.request("POST", "/api/public/organization/import", body, token=bearer)[0]
        code = raw_import(True)
        d1 = state(vw, tok, org_id)["dave@example.com"]
        code2 = raw_import(False)
        d2 = state(vw, tok, org_id)["dave@example.com"]
        results.append(
            f"6 raw import, no groups sent: deleted:true -> {code}, status {d1[1]} (API {d1[2]}), groups {d1[4]}; "
            f"listed again -> {code2}, status {d2[1]} (API {d2[2]}), same id {d2[0] == d0[0]}, groups {d2[4]}"
        )

        s5 = state(vw, tok, org_id)
        others = sorted(e for e, v in s5.items() if e not in ("alice@example.com", "bob@example.com", "carol@example.com", OWNER)
                        and (v[2] == -1 or v[0] != s0[e][0] or v[4] != s0[e][4]))
        results.append(f"  after all: {describe(s5, OWNER)}; other members revoked, re-created or with other groups than at the start: {others or 'none'}")
        for r in results:
            print(r)
    finally:
        if vw:
            vw.stop()
        if slapd:
            slapd.stop()
        if keep:
            print(f"kept {root} (Vaultwarden log, db.sqlite3, each sync's JSON output)")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
