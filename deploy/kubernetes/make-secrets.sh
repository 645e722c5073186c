#!/bin/sh
# Write an overlay's secrets (once) into overlays/OVERLAY/secrets/, which git ignores: an API
# key for trainers, one for Prometheus, and the JSON list of both the server reads. With
# STORE_ACCESS_KEY_ID and STORE_SECRET_ACCESS_KEY set, the object store's credentials too
# (overlays/lab reads its bucket with them).
#
#   ./make-secrets.sh single-node
#   STORE_ACCESS_KEY_ID=... STORE_SECRET_ACCESS_KEY=... ./make-secrets.sh lab
set -eu
overlay=${1:?usage: make-secrets.sh OVERLAY (lab, single-node)}
cd "$(dirname "$0")"
[ -f "overlays/$overlay/kustomization.yaml" ] || { echo "no overlay named $overlay" >&2; exit 2; }
secrets="overlays/$overlay/secrets"
mkdir -p "$secrets"
umask 077
key() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
[ -f "$secrets/client-key" ] || key > "$secrets/client-key"
[ -f "$secrets/metrics-key" ] || key > "$secrets/metrics-key"
printf '["%s", "%s"]\n' "$(cat "$secrets/client-key")" "$(cat "$secrets/metrics-key")" \
    > "$secrets/api-keys.json"
if [ -n "${STORE_ACCESS_KEY_ID:-}" ]; then
    printf %s "$STORE_ACCESS_KEY_ID" > "$secrets/store-access-key-id"
    printf %s "${STORE_SECRET_ACCESS_KEY:?set it with STORE_ACCESS_KEY_ID}" \
        > "$secrets/store-secret-access-key"
fi
echo "secrets in $(pwd)/$secrets; trainers use the key in $secrets/client-key"
