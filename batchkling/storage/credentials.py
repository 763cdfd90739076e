"""Whether the environment offers credentials for a store, judged before any request. Pure.

batchkling reads no storage secret of its own: each store's library finds its
credentials in the standard variables and files. This module only checks that
one of them is there, so a run with none stops at once with one line naming the
variables, instead of waiting on a metadata service that is not there. It sees
the names of the variables set, never their values.
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["CREDENTIAL_VARIABLES", "missing_credentials", "uses_aws_profile"]

# Per scheme: the sets of variables of which one must be set in full.
CREDENTIAL_VARIABLES: dict[str, tuple[tuple[str, ...], ...]] = {
    "s3": (
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_PROFILE",),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI",),
    ),
    "gs": (
        ("GOOGLE_APPLICATION_CREDENTIALS",),
        ("GOOGLE_SERVICE_ACCOUNT",),
        ("GOOGLE_SERVICE_ACCOUNT_PATH",),
        ("GOOGLE_SERVICE_ACCOUNT_KEY",),
    ),
    "az": (
        ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"),
        ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_SAS_KEY"),
        ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"),
        ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_FEDERATED_TOKEN_FILE"),
        ("AZURE_STORAGE_USE_EMULATOR",),
    ),
}

# Files the stores read on their own, standing in for the variables.
_FILES = {
    "s3": "~/.aws/credentials (with AWS_PROFILE, or its default profile)",
    "gs": "~/.config/gcloud/application_default_credentials.json (gcloud auth "
    "application-default login)",
    "az": None,
}


def uses_aws_profile(names: Collection[str], *, credentials_file: bool) -> bool:
    """True when S3 credentials come from a profile (``~/.aws``) rather than variables."""
    if "AWS_ACCESS_KEY_ID" in names:
        return False
    return "AWS_PROFILE" in names or credentials_file


def missing_credentials(
    scheme: str, names: Collection[str], *, credential_file: bool = False
) -> str | None:
    """The one-line problem when no credentials are offered for ``scheme``, else None.

    ``names`` are the environment variables set (non-empty); ``credential_file``
    says the store's standard credentials file exists.
    """
    options = CREDENTIAL_VARIABLES[scheme]
    if credential_file or any(all(n in names for n in option) for option in options):
        return None
    listed = "; ".join(" + ".join(option) for option in options)
    file = _FILES[scheme]
    also = f", or the file {file}" if file else ""
    return (
        f"no credentials for {scheme}:// storage: set {listed}{also}. batchkling reads "
        "them the store's standard way and never prints or records them"
    )
