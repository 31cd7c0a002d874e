"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) deterministically.

Signed seeds are made for the targets' fixed clock (hookbridge_fuzz::NOW) with the fuzz
configuration's secrets, so the verifiers' success paths are in the corpus from the start.
ES256 seeds use the test fixture key (tests/fixtures/other-test-key.pem).
Usage: python3 fuzz/seeds/make_seeds.py   (needs PyJWT + cryptography, as the jwt tests do)
"""
import base64
import hashlib
import hmac
import json
import os
import pathlib

import jwt

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
NOW = 1_767_225_600
SECRET = b"fuzz-secret"
WHKEY = b"fuzz-standard-webhooks-key"
ES_KEY = (ROOT / "tests" / "fixtures" / "other-test-key.pem").read_text()
FIC_KEY = (ROOT / "tests" / "fixtures" / "fic-test-key.pem").read_text()


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def req(headers, body):
    return ("".join(f"{k}: {v}\n" for k, v in headers) + "\n").encode() + body


def sig(data):
    return hmac.new(SECRET, data, hashlib.sha256).hexdigest()


ce_json = b'{"specversion":"1.0","id":"e1","source":"urn:s","type":"com.example.a","data":{"x":[1,2,{"y":null}]}}'
binary = req([("ce-specversion", "1.0"), ("ce-id", "e1"), ("ce-source", "urn:s"), ("ce-type", "t.a"),
              ("ce-subject", "s%20b"), ("ce-time", "2026-01-01T00:00:00Z"), ("ce-ext", "v"),
              ("content-type", "application/json")], b'{"a":1}')
structured = req([("content-type", "application/cloudevents+json")], ce_json)
batch = req([("content-type", "application/cloudevents-batch+json")], b"[" + ce_json + b"," + ce_json + b"]")
fic_binary = req([("ce-specversion", "1.0"), ("ce-id", "f1"), ("ce-source", "https://www.fattureincloud.it"),
                  ("ce-type", "it.fattureincloud.webhooks.issued_documents.invoices.create"),
                  ("ce-subject", "company:1"), ("content-type", "application/json")], b'{"data":{"ids":[1,2]}}')
github_body = b'{"action":"opened","number":1}'
stripe_body = b'{"id":"evt_1","type":"invoice.paid","created":1767225600,"account":"acct_1"}'
svix_body = b'{"type":"user.created","data":{"id":1}}'
hmac_body = b'{"id":"a1","event":"paid","at":1767225600}'

# decode: first byte selects the decoder (0 cloudevents, 1 fic, 2 github, 3 stripe, 4 svix, 5 mapping)
for i, r in enumerate([binary, structured, batch]):
    write("decode", f"ce-{i}", b"\x00" + r)
write("decode", "fic", b"\x01" + fic_binary)
write("decode", "github", b"\x02" + req([("x-github-event", "pull_request"), ("x-github-delivery", "d1")], github_body))
write("decode", "stripe", b"\x03" + req([], stripe_body))
write("decode", "svix", b"\x04" + req([("webhook-id", "msg_1"), ("webhook-timestamp", str(NOW))], svix_body))
write("decode", "mapping", b"\x05" + req([("x-kind", "order"), ("x-tenant", "t1")], hmac_body))

# signatures: 0 token, 1 basic, 2 hmac, 3 github, 4 stripe, 5 svix
write("signatures", "token", b"\x00" + req([("authorization", "Bearer fuzz-token")], b"{}"))
basic = base64.b64encode(b"hook:fuzz-token").decode()
write("signatures", "basic", b"\x01" + req([("authorization", f"Basic {basic}")], b"{}"))
write("signatures", "hmac", b"\x02" + req([("x-timestamp", str(NOW)),
                                            ("x-signature", "sha256=" + sig(f"{NOW}.".encode() + hmac_body))], hmac_body))
write("signatures", "github", b"\x03" + req([("x-hub-signature-256", "sha256=" + sig(github_body))], github_body))
write("signatures", "stripe", b"\x04" + req([("stripe-signature", f"t={NOW},v1={sig(f'{NOW}.'.encode() + stripe_body)},v0=00")], stripe_body))
sw = base64.b64encode(hmac.new(WHKEY, f"msg_1.{NOW}.".encode() + svix_body, hashlib.sha256).digest()).decode()
write("signatures", "svix", b"\x05" + req([("webhook-id", "msg_1"), ("webhook-timestamp", str(NOW)),
                                            ("webhook-signature", f"v1,{sw} v1,AAAA")], svix_body))

# jwt: 0 fic notification, 1 fic challenge, 2 HS256 source, 3 ES256 source; the rest is the token
fic_claims = {"iss": "https://api-v2.fattureincloud.it", "aud": "https://hooks.example.com/fic",
              "exp": NOW + 300, "iat": NOW, "sub": "company:1", "jti": "id", "aid": 7}
write("jwt", "fic", b"\x00" + jwt.encode(fic_claims, FIC_KEY, algorithm="ES256").encode())
write("jwt", "fic-challenge", b"\x01" + jwt.encode({k: v for k, v in fic_claims.items() if k not in ("sub", "jti")},
                                                    FIC_KEY, algorithm="ES256").encode())
write("jwt", "hs256", b"\x02" + jwt.encode({"iss": "https://issuer", "aud": "hooks", "exp": NOW + 60, "jti": "e1"},
                                           SECRET, algorithm="HS256").encode())
write("jwt", "es256", b"\x03" + jwt.encode({"exp": NOW + 60, "jti": "e1", "sub": "s"}, ES_KEY, algorithm="ES256",
                                           headers={"kid": "k1"}).encode())

# config: the example configuration and small ones
write("config", "example", (ROOT / "config.toml.example").read_text())
write("config", "docker", (ROOT / "docker" / "hookbridge.toml").read_text())
write("config", "small", '[sources.a]\npath = "/a"\nkind = "cloudevents"\nverify = { kind = "none" }\n'
      '[sinks.f]\ntype = "file"\npath = "x.jsonl"\n[[routes]]\ntypes = ["com.*.**"]\nsinks = ["f"]\n'
      '[dedup]\nwindow = "1h"\n[spool]\nmax_bytes = "1MiB"\n')

# template
for i, t in enumerate(["fic.{type}", "{source}/{id}/{subject}", "a.{hbsource}.{partitionkey}.{n}", "{{x}}{time}", "{"]):
    write("template", f"t{i}", t)

# handler: selector byte (path), method byte (0 POST, 1 GET), then the request
write("handler", "events-binary", b"\x00\x00" + binary)
write("handler", "events-batch", b"\x00\x00" + batch)
write("handler", "token", b"\x01\x00" + req([("authorization", "Bearer fuzz-token")] + [l.split(": ", 1) for l in binary.split(b"\n\n")[0].decode().split("\n")], b'{"a":1}'))
write("handler", "hmac", b"\x03\x00" + req([("x-kind", "order"), ("x-timestamp", str(NOW)),
                                            ("x-signature", "sha256=" + sig(f"{NOW}.".encode() + hmac_body))], hmac_body))
write("handler", "github", b"\x04\x00" + req([("x-github-event", "push"), ("x-github-delivery", "d1"),
                                              ("x-hub-signature-256", "sha256=" + sig(github_body))], github_body))
write("handler", "fic-get", b"\x07\x01" + req([("x-fic-verification-challenge", "abc"), ("x-fuzz-query", "x=1")], b""))
write("handler", "readyz", b"\x0b\x01")
