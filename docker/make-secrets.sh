#!/bin/sh
# Create the compose secrets (once): MinIO's root user and password, and one API key.
set -eu
cd "$(dirname "$0")"
mkdir -p secrets lab-data
umask 077
[ -f secrets/minio_user ] || echo augstream > secrets/minio_user
[ -f secrets/minio_password ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > secrets/minio_password
[ -f secrets/augstream_keys ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > secrets/augstream_keys
echo "secrets in $(pwd)/secrets; trainers use the key in secrets/augstream_keys"
