"""Independent tokens for hookbridge's jwt verifier tests, made with PyJWT + cryptography.

Prints one JSON object: public keys (PEM), a JWKS, and tokens per algorithm.
Usage: python3 pyjwt_tokens.py NOW
"""
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

now = int(sys.argv[1])
claims = {"iss": "https://issuer.example", "aud": ["hookbridge"], "exp": now + 600, "jti": "evt-1"}


def pem(public_key):
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec256 = ec.generate_private_key(ec.SECP256R1())
ec384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()
rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)

out = {
    "pem": {
        "rsa": pem(rsa_key.public_key()),
        "ec256": pem(ec256.public_key()),
        "ec384": pem(ec384.public_key()),
        "ed": pem(ed.public_key()),
    },
    "tokens": {
        "HS256": jwt.encode(claims, "shared-secret", algorithm="HS256"),
        "HS512": jwt.encode(claims, "shared-secret", algorithm="HS512"),
        "RS256": jwt.encode(claims, rsa_key, algorithm="RS256"),
        "RS512": jwt.encode(claims, rsa_key, algorithm="RS512"),
        "PS256": jwt.encode(claims, rsa_key, algorithm="PS256"),
        "ES256": jwt.encode(claims, ec256, algorithm="ES256"),
        "ES384": jwt.encode(claims, ec384, algorithm="ES384"),
        "EdDSA": jwt.encode(claims, ed, algorithm="EdDSA"),
        "kid1": jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "k1"}),
        "kid2": jwt.encode(claims, rsa2, algorithm="RS256", headers={"kid": "k2"}),
        "wrong_jti": jwt.encode(dict(claims, jti="other"), rsa_key, algorithm="RS256", headers={"kid": "k1"}),
    },
    "unknown_kids": [
        jwt.encode(claims, rsa2, algorithm="RS256", headers={"kid": f"forged-{i}"}) for i in range(20)
    ],
    "jwks1": {"keys": [dict(json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), kid="k1", alg="RS256", use="sig")]},
    "jwks2": {
        "keys": [
            dict(json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), kid="k1", alg="RS256", use="sig"),
            dict(json.loads(RSAAlgorithm.to_jwk(rsa2.public_key())), kid="k2", alg="RS256", use="sig"),
        ]
    },
}
print(json.dumps(out))
