#!/usr/bin/env bash
# Demo certificates for the secured compose stack (compose.secure.yaml): a private CA and a
# server certificate for ccwatch, made with openssl. FOR THE DEMO ONLY: use your own CA (or
# cert-manager, ...) for anything real.
#
#   deploy/compose/make-certs.sh [OUTPUT_DIR]      # default: deploy/compose/certs/ (gitignored)
#
# OUTPUT_DIR/
#   ca.key            the CA's private key (0600); mounted into no container
#   ca/ca.crt         the CA certificate: Prometheus trusts it (tls_config.ca_file)
#   ccwatch/tls.crt   ccwatch's certificate, for the names in SANS (below)
#   ccwatch/tls.key   its private key, 0644: the container's user (65532) reads it through
#                     the bind mount. Never leave a real key world-readable.
#
# Run it again to renew the server certificate: the CA is kept (delete OUTPUT_DIR to start
# over), and the new files replace the old ones atomically; ccwatch picks them up without a
# restart. SANS overrides the names: SANS="DNS:ccwatch,DNS:myhost,IP:10.0.0.5".
set -euo pipefail
umask 022

out="${1:-$(cd "$(dirname "$0")" && pwd)/certs}"
sans="${SANS:-DNS:ccwatch,DNS:localhost,IP:127.0.0.1}"
days="${DAYS:-365}"

command -v openssl >/dev/null || { echo "make-certs.sh needs openssl" >&2; exit 1; }
mkdir -p "$out/ca" "$out/ccwatch"
work="$(mktemp -d "$out/.tmp.XXXXXX")"
trap 'rm -rf "$work"' EXIT

serial() { echo "0x$(openssl rand -hex 16)"; }

if [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca/ca.crt" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key"
  openssl req -new -x509 -key "$work/ca.key" -out "$work/ca.crt" -days 3650 \
    -set_serial "$(serial)" -subj "/CN=ccwatch demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash"
  chmod 0600 "$work/ca.key"
  chmod 0644 "$work/ca.crt"
  mv -f "$work/ca.key" "$out/ca.key"
  mv -f "$work/ca.crt" "$out/ca/ca.crt"
  echo "created the demo CA: $out/ca/ca.crt"
fi

cat >"$work/server.ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $sans
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/tls.key"
openssl req -new -key "$work/tls.key" -subj "/CN=ccwatch" -out "$work/tls.csr"
if ! openssl x509 -req -in "$work/tls.csr" -CA "$out/ca/ca.crt" -CAkey "$out/ca.key" \
  -set_serial "$(serial)" -days "$days" -sha256 -extfile "$work/server.ext" \
  -out "$work/tls.crt" 2>"$work/x509.log"; then
  cat "$work/x509.log" >&2
  exit 1
fi
openssl verify -CAfile "$out/ca/ca.crt" "$work/tls.crt" >/dev/null
chmod 0644 "$work/tls.crt" "$work/tls.key"
# key first: a reader that sees the new certificate finds its key already in place
mv -f "$work/tls.key" "$out/ccwatch/tls.key"
mv -f "$work/tls.crt" "$out/ccwatch/tls.crt"
echo "issued $out/ccwatch/tls.crt for $sans, valid $days days"
