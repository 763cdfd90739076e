"""GCS and Azure through the same client: opened from their standard variables, URLs signed.

No GCS or Azure server runs here; signing is computed locally from the credentials,
so these tests check that a ``gs://`` or ``az://`` location opens the right store
and signs a GET URL of the right object, with no request sent.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import anyio
import pytest

from batchkling.storage.location import parse_location
from batchkling.storage.store import open_store


def _sign(location: str, key: str) -> str:
    store = open_store(parse_location(location))
    return anyio.run(store.sign, key, timedelta(hours=1))


def test_azure_signs_from_the_account_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """az://container/ with AZURE_STORAGE_ACCOUNT_NAME and _KEY: a read-only SAS URL of the blob."""
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "studio")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", base64.b64encode(b"k" * 32).decode())
    url = _sign("az://frames/ep01/", "ep01/abababababababab/s01.png")
    assert url.startswith(
        "https://studio.blob.core.windows.net/frames/ep01/abababababababab/s01.png?"
    )
    assert "sp=r" in url and "sig=" in url


def test_gcs_signs_from_a_service_account_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """gs://bucket/ with GOOGLE_SERVICE_ACCOUNT_KEY: a V4 signed URL of the object."""
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "private_key": pem,
        "private_key_id": "k1",
        "client_email": "render@studio.iam.gserviceaccount.com",
        "project_id": "studio",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_KEY", json.dumps(account))
    url = _sign("gs://frames/ep01/", "ep01/abababababababab/s01.png")
    assert url.startswith("https://storage.googleapis.com/frames/ep01/abababababababab/s01.png?")
    assert "X-Goog-Algorithm=GOOG4-RSA-SHA256" in url and "X-Goog-Signature=" in url
