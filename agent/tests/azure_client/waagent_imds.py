"""Runs the Azure Linux agent's own IMDS client (Debian package `waagent`, module
azurelinuxagent.common.protocol.imds) against an agent on 127.0.0.1:<port>, unmodified but for
the endpoint it calls. Prints what the client returns as one JSON object."""
import json
import sys

from azurelinuxagent.common.protocol import imds

port = sys.argv[1]
# The client calls 169.254.169.254 and falls back to the wireserver address when it cannot
# connect; point the first at the agent under test and the second at a closed port.
imds.IMDS_ENDPOINT = "127.0.0.1:" + port
client = imds.get_imds_client("127.0.0.1:9")

compute = client.get_compute()
healthy, error = client.validate()
print(json.dumps({
    "healthy": healthy,
    "error": error,
    "api_version": imds.APIVERSION,
    "location": compute.location,
    "name": compute.name,
    "offer": compute.offer,
    "osType": compute.osType,
    "publisher": compute.publisher,
    "sku": compute.sku,
    "subscriptionId": compute.subscriptionId,
    "vmId": compute.vmId,
    "vmSize": compute.vmSize,
    "zone": compute.zone,
    "image_origin": compute.image_origin,
}))
