"""Encryption at rest (spec.kubernetes.encryptionAtRest), on control-plane nodes only: the API
server's EncryptionConfiguration with the bundle's key, its flag and its volume.

apiserver.config.k8s.io/v1 (k8s.io/apiserver/pkg/apis/apiserver/v1/types.go):
EncryptionConfiguration.resources[] of ResourceConfiguration {resources, providers}; a
ProviderConfiguration holds one of aesgcm, aescbc, secretbox, identity, kms; secretbox.keys[] of
Key {name, secret (base64)}, each key 32 bytes. The first provider writes; every provider is
tried to read, so identity last still reads Secrets written before encryption was on.
The file holds the key: 0600, root's, and only in the user-data of control-plane nodes.
"""
from __future__ import annotations

from .. import owned
from ..pki.bundle import Bundle

ENCRYPTION_API = "apiserver.config.k8s.io/v1"
KEY_NAME = "bakery-1"


def configuration(bundle: Bundle) -> dict:
    assert bundle.encryption_key is not None, "the secrets store adds the key when encryption at rest is on"
    return {
        "apiVersion": ENCRYPTION_API,
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [{"secretbox": {"keys": [{"name": KEY_NAME, "secret": bundle.encryption_key}]}},
                          {"identity": {}}],
        }],
    }


def api_server_args() -> list[tuple[str, str]]:
    return [("encryption-provider-config", owned.ENCRYPTION_CONFIG)]


def volumes() -> list[dict]:
    return [{"name": "encryption-config", "hostPath": owned.ENCRYPTION_CONFIG, "mountPath": owned.ENCRYPTION_CONFIG,
             "readOnly": True, "pathType": "File"}]
