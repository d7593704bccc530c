#!/usr/bin/env bash
# bench/curl-floor.sh — the "curl floor" baseline of the benchmark suite.
#
# The smallest thing a user could write instead of dds-certsync: for each
# instance, curl the DDS download-link API with the token header, pull the
# links out with jq, curl each certificate to a temporary name in the target
# folder and mv it into place. No verification, no hashing, no hooks: this is
# the floor, not a competitor with the same guarantees.
#
# Usage: curl-floor.sh API_BASE PROJECT_ID CA_FILE TOKEN OUT_DIR IDS_FILE COUNT
#   API_BASE  e.g. https://127.0.0.1:8443 (no trailing slash)
#   IDS_FILE  one instance id per line; the first COUNT lines are synced
# Each certificate lands at OUT_DIR/<id>-<category>.crt.
set -euo pipefail

if [[ $# -ne 7 ]]; then
    echo "usage: $0 API_BASE PROJECT_ID CA_FILE TOKEN OUT_DIR IDS_FILE COUNT" >&2
    exit 2
fi
api=$1 project=$2 ca=$3 token=$4 out=$5 ids=$6 count=$7

head -n "$count" "$ids" | while IFS= read -r id; do
    curl -fsS --cacert "$ca" -H "X-Auth-Token: $token" \
        "$api/v3/$project/instances/$id/ssl-cert/download-link" |
        jq -r '.certs[] | "\(.category) \(.download_link)"' |
        while read -r category link; do
            tmp="$out/.$id-$category.crt.tmp"
            curl -fsS --cacert "$ca" -o "$tmp" "$link"
            mv -f "$tmp" "$out/$id-$category.crt"
        done
done
