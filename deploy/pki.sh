#!/usr/bin/env bash
# The deployment's own certificate authority and the certificates of its channels (openssl):
#   ca.crt / ca.key                      the CA (10 years); the key never leaves this folder
#   rabbitmq.crt / .key                  RabbitMQ's AMQPS listener          (server, 127.0.0.1 and localhost)
#   volume-agent.crt / .key              the VolumeAgent's gRPC listener    (server, 127.0.0.1 and localhost)
#   api.crt / .key                       the Api, as a VolumeAgent client   (client, OU=api)
#   backup-agent-<zone>.crt / .key       the BackupAgents of a zone         (client, OU=backup-agent, L=<zone>)
# The role is the subject's OU and the availability zone its L: a VolumeAgent accepts the Api and the BackupAgents of
# its own zone only. Keys are 0600 in a 0700 folder (root); a certificate is issued once and re-issued when it is
# missing, when it no longer matches its key or the CA, or when it expires within 30 days, so running this again is
# safe and rotates only what is due.
#
# Usage: deploy/pki.sh [ensure]          the CA and every certificate above (zones: $VB_ZONES, default "nova")
#        deploy/pki.sh issue NAME ROLE [ZONE] [SAN,...]   one more certificate (e.g. a VolumeAgent on 127.0.0.11)
# Folder: $VB_PKI, default $VB_STATE/pki (default <repo>/.state/pki).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$(realpath -m "${VB_STATE:-$REPO/.state}")
PKI=$(realpath -m "${VB_PKI:-$STATE/pki}")
ZONES=${VB_ZONES:-nova}
LEAF_DAYS=365
RENEW_SECONDS=$((30 * 24 * 3600))
LOCAL_SANS="IP:127.0.0.1,DNS:localhost"

die() { echo "pki: ERROR: $*" >&2; exit 1; }

# The CA: made once. A new CA means every certificate is re-issued (they no longer verify against it).
ensure_ca() {
  install -d -m 700 "$PKI"
  if [[ -s $PKI/ca.key && -s $PKI/ca.crt ]]; then return; fi
  (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null)
  openssl req -new -x509 -key "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 -subj "/O=VolumeBackup/CN=VolumeBackup deployment CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null \
    || die "could not make the CA"
  chmod 600 "$PKI/ca.key"; chmod 644 "$PKI/ca.crt"
  echo "pki: made the deployment CA in $PKI"
}

# current NAME: the certificate exists, matches its key, verifies against the CA and lives 30 more days.
current() {
  local crt=$PKI/$1.crt key=$PKI/$1.key
  [[ -s $crt && -s $key ]] || return 1
  openssl verify -CAfile "$PKI/ca.crt" "$crt" >/dev/null 2>&1 || return 1
  openssl x509 -in "$crt" -noout -checkend "$RENEW_SECONDS" >/dev/null 2>&1 || return 1
  [[ $(openssl x509 -in "$crt" -noout -pubkey) == $(openssl pkey -in "$key" -pubout 2>/dev/null) ]]
}

# issue NAME ROLE [ZONE] [SANS]: a certificate for a server (role rabbitmq or volume-agent: serverAuth, SANS required)
# or a client (api, backup-agent: clientAuth), with a fresh key.
issue() {
  local name=$1 role=$2 zone=${3:-} sans=${4:-} subject usage ext
  [[ $name =~ ^[a-z0-9][a-z0-9.-]*$ ]] || die "bad certificate name: $name"
  current "$name" && return
  subject="/O=VolumeBackup/OU=$role"
  [[ -n $zone ]] && subject+="/L=$zone"
  subject+="/CN=$name"
  case $role in
    rabbitmq|volume-agent) usage=serverAuth; [[ -n $sans ]] || die "a server certificate needs names (SANs)" ;;
    api|backup-agent)      usage=clientAuth ;;
    *) die "unknown role: $role" ;;
  esac
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$ext"
  (umask 077
   openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key.new" 2>/dev/null
   openssl req -new -key "$PKI/$name.key.new" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
   openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days "$LEAF_DAYS" \
     -extfile "$ext" -out "$PKI/$name.crt.new" 2>/dev/null) || { rm -f "$ext"; die "could not issue $name"; }
  rm -f "$ext" "$PKI/$name.csr"
  mv -f "$PKI/$name.key.new" "$PKI/$name.key"
  mv -f "$PKI/$name.crt.new" "$PKI/$name.crt"
  chmod 600 "$PKI/$name.key"; chmod 644 "$PKI/$name.crt"
  echo "pki: issued $name ($subject, $usage, $LEAF_DAYS days)"
}

ensure() {
  ensure_ca
  issue rabbitmq rabbitmq "" "$LOCAL_SANS"
  issue volume-agent volume-agent "" "$LOCAL_SANS"
  issue api api
  local zone
  for zone in $ZONES; do
    [[ $zone =~ ^[A-Za-z0-9_-]+$ ]] || die "bad zone name: $zone"
    issue "backup-agent-$zone" backup-agent "$zone"
  done
  chmod 600 "$PKI"/*.key "$PKI"/*.srl 2>/dev/null || true
}

case ${1:-ensure} in
  ensure) ensure ;;
  issue)  shift; ensure_ca; issue "$@" ;;
  *) echo "usage: $0 [ensure] | issue NAME ROLE [ZONE] [SAN,...]" >&2; exit 2 ;;
esac
