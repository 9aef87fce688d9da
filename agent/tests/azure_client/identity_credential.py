"""Runs the Azure SDK's managed-identity credential (PyPI azure-identity, unmodified) against an
agent on 127.0.0.1:<port> and prints, as one JSON object, what it raised and how long it took.
AZURE_POD_IDENTITY_AUTHORITY_HOST is the SDK's own setting for where IMDS answers."""
import json
import os
import sys
import time

port = sys.argv[1]
os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = "http://127.0.0.1:" + port

from azure.identity import CredentialUnavailableError, ManagedIdentityCredential  # noqa: E402

credential = ManagedIdentityCredential()
started = time.monotonic()
try:
    credential.get_token("https://management.azure.com/.default")
    outcome = {"raised": None, "message": ""}
except CredentialUnavailableError as error:
    outcome = {"raised": "CredentialUnavailableError", "message": str(error)}
except Exception as error:  # any other outcome is reported to the test as is
    outcome = {"raised": type(error).__name__, "message": str(error)}
outcome["seconds"] = time.monotonic() - started
print(json.dumps(outcome))
