"""bench/sdk_sync.py — the "SDK script" baseline of the benchmark suite.

What a user of Huawei Cloud's official Python SDK would write instead of
dds-certsync: for each instance, ask the DDS API for the download links with
``DdsClient.list_ssl_cert_download_address``, fetch each certificate with
``requests.get`` (verified against the bench CA), and write it atomically
(temporary file in the same folder + ``os.replace``; no fsync, like most
such scripts). Instances are handled one after another, as a straightforward
script would.

Runs inside the venv that ``bench/run`` creates (huaweicloudsdkdds + core).

Usage: sdk_sync.py ENDPOINT PROJECT_ID CA_FILE OUT_DIR IDS_FILE COUNT
Each certificate lands at OUT_DIR/<id>-<category>.crt.
"""

import os
import sys
import tempfile

import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkdds.v3 import DdsClient, ListSslCertDownloadAddressRequest


def atomic_write(path: str, data: bytes) -> None:
    """Write data to path via a temporary file in the same folder + rename."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".sdk-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv: list) -> int:
    """Sync the first COUNT instances of IDS_FILE; exit status 0 on success."""
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, project_id, ca_file, out_dir, ids_file, count = argv[1:]
    with open(ids_file, encoding="ascii") as handle:
        ids = [line.strip() for line in handle if line.strip()][: int(count)]

    # The placeholder AK/SK sign every request; the bench server ignores them.
    credentials = BasicCredentials("BENCHAK", "BENCHSK", project_id)
    config = HttpConfig(ignore_ssl_verification=False, ssl_ca_cert=ca_file)
    client = (
        DdsClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([endpoint])
        .with_http_config(config)
        .build()
    )

    for instance_id in ids:
        request = ListSslCertDownloadAddressRequest(instance_id=instance_id)
        response = client.list_ssl_cert_download_address(request)
        for cert in response.certs or []:
            answer = requests.get(cert.download_link, verify=ca_file, timeout=30)
            answer.raise_for_status()
            target = os.path.join(out_dir, f"{instance_id}-{cert.category}.crt")
            atomic_write(target, answer.content)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
