#!/usr/bin/env bash
# Runs OpenStack's own conformance tests (Tempest 33 from Debian, with the cinder-tempest-plugin)
# against the running Api: the backup tests of tempest.api.volume and of the plugin, and the
# volume and snapshot tests that need nothing but this service (deploy/tempest-tests.txt).
#
# Usage: deploy/tempest.sh [--api URL] [--concurrency N] [--list]
#   --api URL        the Api to test (default http://127.0.0.1:$VB_API_PORT, 8776: the one deploy/run.sh starts,
#                    which Keystone's catalog names in region RegionOne). Any other URL is registered in
#                    Keystone's catalog under a region of its own (vb-tempest-<random>), used by this run
#                    alone and removed when it ends, so RegionOne's endpoints are never changed.
#   --concurrency N  Tempest's workers (default 2)
#   --list           only list the selected tests
#
# Credentials: pre-provisioned (Tempest's accounts.yaml), not dynamic. Dynamic credentials create
# and delete a project, a user and role assignments for every test class: about 250 Keystone writes
# for this selection, which a Keystone on SQLite serves one at a time (measured: over 4 s each on a
# loaded machine, most of the run). Instead this script provisions, once and idempotently as
# services.sh provisions the demo users, ACCOUNTS member users each in a project of its own
# (vb-tempest-N) and ADMINS users with the admin role in a project of their own (vb-tempest-admin-N),
# with generated passwords in $VB_KEYSTONE_SECRETS (0600). Tempest locks an account per test class,
# so a class still has its projects to itself; a worker may hold a primary, an alt and an admin at
# once, hence two member accounts and one admin per worker. The Api keeps its data per deployment,
# so these Keystone projects hold nothing of another deployment's.
#
# The workspace (tempest.conf, stestr's results, tempest.log) is $VB_TEMPEST_DIR (default
# <state>/tempest). Prints the passed, skipped (with Tempest's reasons) and failed counts; exits
# non-zero when a test failed or none passed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Keystone's URL, the secrets folder and the state folder, as deploy/services.sh keeps them.
eval "$("$REPO/deploy/services.sh" env)"
# shellcheck disable=SC2154 # VB_* come from services.sh env
WORKSPACE=${VB_TEMPEST_DIR:-$VB_STATE/tempest}
SELECTION=$REPO/deploy/tempest-tests.txt
EXCLUDED=$REPO/deploy/tempest-exclude.txt
API=http://127.0.0.1:${VB_API_PORT:-8776}
CONCURRENCY=2
ACCOUNT_PREFIX=vb-tempest
list=no own_region=no

say() { echo "tempest: $*"; }
die() { echo "tempest: ERROR: $*" >&2; exit 1; }

while (($#)); do
  case $1 in
    --api) API=${2:?--api needs a URL}; own_region=yes; shift 2 ;;
    --concurrency) CONCURRENCY=${2:?--concurrency needs a number}; shift 2 ;;
    --list) list=yes; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see $0 --help)" ;;
  esac
done
API=${API%/}
[[ $API == "http://127.0.0.1:${VB_API_PORT:-8776}" ]] && own_region=no

# Debian's tempest runs on Debian's python3 (a python3 earlier on PATH may lack its modules); stestr
# starts its workers with $PYTHON.
export PATH=/usr/bin:$PATH PYTHON=/usr/bin/python3
command -v tempest >/dev/null || die "tempest not found; run: deploy/services.sh install"

ADMIN_PASSWORD=$(cat "$VB_KEYSTONE_SECRETS/admin") || die "no Keystone admin password in $VB_KEYSTONE_SECRETS (start Keystone: deploy/services.sh start)"

# ks METHOD PATH [JSON]: Keystone's REST API as the admin; prints the body.
ks() {
  curl -sf --max-time 30 -X "$1" -H "X-Auth-Token: $KS_TOKEN" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$VB_KEYSTONE_URL$2"
}

KS_TOKEN=$(curl -sf --max-time 60 -D - -o /dev/null -H 'Content-Type: application/json' --data "$(jq -nc --arg p "$ADMIN_PASSWORD" \
  '{auth: {identity: {methods: ["password"], password: {user: {name: "admin", domain: {id: "default"}, password: $p}}},
           scope: {project: {name: "admin", domain: {id: "default"}}}}}')" "$VB_KEYSTONE_URL/auth/tokens?nocatalog" \
  | awk -F': ' 'tolower($1) == "x-subject-token" { print $2 }' | tr -d '\r')
[[ -n $KS_TOKEN ]] || die "the Keystone admin cannot log in at $VB_KEYSTONE_URL"

# secret NAME: the password in $VB_KEYSTONE_SECRETS/NAME, generated the first time.
secret() {
  local file=$VB_KEYSTONE_SECRETS/$1
  if [[ ! -s $file ]]; then (umask 077; openssl rand -hex 24 >"$file"); fi
  chmod 600 "$file"
  cat "$file"
}

# ks_id KIND NAME CREATE_JSON: the id of the named entity, created when missing.
ks_id() {
  local id
  id=$(ks GET "/${1}s?name=$2" | jq -r ".${1}s[0].id // empty")
  [[ -n $id ]] || id=$(ks POST "/${1}s" "$3" | jq -r ".${1}.id")
  [[ -n $id && $id != null ]] || die "could not create Keystone $1 $2"
  echo "$id"
}

# account NAME ROLE ROLE_ID: a project NAME and a user NAME with ROLE on it (existing ones are kept; the
# role is granted again, which Keystone ignores when it is there); prints the accounts.yaml entry.
account() {
  local name=$1 role=$2 role_id=$3 project user
  project=$(ks_id project "$name" "$(jq -nc --arg n "$name" '{project: {name: $n, domain_id: "default", description: "deploy/tempest.sh"}}')")
  user=$(ks_id user "$name" "$(jq -nc --arg n "$name" --arg p "$(secret "$name")" '{user: {name: $n, password: $p, domain_id: "default", enabled: true}}')")
  ks PUT "/projects/$project/users/$user/roles/$role_id" >/dev/null || die "could not grant $role to $name"
  printf -- '- username: %s\n  project_name: %s\n  password: %s\n  roles: [%s]\n' "$name" "$name" "$(secret "$name")" "$role"
}

role_id() {
  local id
  id=$(ks GET "/roles?name=$1" | jq -r '.roles[0].id // empty')
  [[ -n $id ]] || die "Keystone has no role $1 (deploy/services.sh start provisions it)"
  echo "$id"
}

REGION=RegionOne
if [[ $own_region == yes ]]; then
  REGION=vb-tempest-$(openssl rand -hex 4)
  ENDPOINTS=()
  remove_region() {
    local id
    for id in "${ENDPOINTS[@]}"; do ks DELETE "/endpoints/$id" >/dev/null || echo "tempest: could not delete endpoint $id" >&2; done
    ks DELETE "/regions/$REGION" >/dev/null || echo "tempest: could not delete region $REGION" >&2
  }
  trap remove_region EXIT
  ks POST /regions "$(jq -nc --arg r "$REGION" '{region: {id: $r, description: "deploy/tempest.sh, one run"}}')" >/dev/null \
    || die "could not create region $REGION"
  for type in volumev3 block-storage; do
    service=$(ks GET "/services?type=$type" | jq -r '.services[0].id // empty')
    [[ -n $service ]] || die "Keystone has no $type service (deploy/services.sh start provisions it)"
    ENDPOINTS+=("$(ks POST /endpoints "$(jq -nc --arg s "$service" --arg u "$API/v3/%(project_id)s" --arg r "$REGION" \
      '{endpoint: {service_id: $s, interface: "public", url: $u, region_id: $r, enabled: true}}')" | jq -r .endpoint.id)")
  done
  say "registered $API in Keystone's catalog as region $REGION (removed at exit)"
fi

# The microversion range the Api announces (its version document, GET /).
versions=$(curl -s --max-time 10 "$API/") || die "the Api does not answer at $API/"
MIN_MV=$(jq -r '.versions[] | select(.id == "v3.0") | .min_version' <<<"$versions")
MAX_MV=$(jq -r '.versions[] | select(.id == "v3.0") | .version' <<<"$versions")
[[ $MIN_MV =~ ^3\.[0-9]+$ && $MAX_MV =~ ^3\.[0-9]+$ ]] || die "no v3.0 version document at $API/: $versions"

install -d -m 700 "$WORKSPACE"
install -d "$WORKSPACE/etc" "$WORKSPACE/logs" "$WORKSPACE/lock"

say "provisioning Tempest's accounts in Keystone (kept for later runs)"
member_role=$(role_id member) admin_role=$(role_id admin)
{
  for ((i = 1; i <= 2 * CONCURRENCY; i++)); do account "$ACCOUNT_PREFIX-$i" member "$member_role"; done
  for ((i = 1; i <= CONCURRENCY; i++)); do account "$ACCOUNT_PREFIX-admin-$i" admin "$admin_role"; done
} >"$WORKSPACE/etc/accounts.yaml.new"
chmod 600 "$WORKSPACE/etc/accounts.yaml.new"
mv -f "$WORKSPACE/etc/accounts.yaml.new" "$WORKSPACE/etc/accounts.yaml"
# stestr's settings, as `tempest init` writes them (without registering a workspace in ~/.tempest).
cat >"$WORKSPACE/.stestr.conf" <<EOF
[DEFAULT]
test_path=$(/usr/bin/python3 -c 'import os, tempest; print(os.path.dirname(tempest.__file__))')/test_discover
top_dir=$(/usr/bin/python3 -c 'import os, tempest; print(os.path.dirname(os.path.dirname(tempest.__file__)))')
group_regex=([^\.]*\.)*
EOF
(umask 077; cat >"$WORKSPACE/etc/tempest.conf" <<EOF
# Written by deploy/tempest.sh; edits are overwritten on the next run.
[DEFAULT]
log_dir = $WORKSPACE/logs
log_file = tempest.log

[oslo_concurrency]
lock_path = $WORKSPACE/lock

[auth]
use_dynamic_credentials = false
test_accounts_file = $WORKSPACE/etc/accounts.yaml
create_isolated_networks = false
default_credentials_domain_name = Default
admin_domain_name = Default

[identity]
auth_version = v3
uri_v3 = $VB_KEYSTONE_URL
region = RegionOne
disable_ssl_certificate_validation = true

[identity-feature-enabled]
api_v2 = false
api_v3 = true

# This service is Block Storage and nothing else: no compute, image, network or object storage.
[service_available]
cinder = true
nova = false
glance = false
neutron = false
swift = false
horizon = false

[volume]
catalog_type = volumev3
region = $REGION
endpoint_type = publicURL
min_microversion = $MIN_MV
max_microversion = $MAX_MV
volume_size = 1
build_interval = 1
build_timeout = 120

# What the Api implements: backups and snapshots; no clones from volumes, no volume types or
# back-end pools, no manage/unmanage, no extend.
[volume-feature-enabled]
backup = true
snapshot = true
clone = false
multi_backend = false
manage_volume = false
manage_snapshot = false
extend_attached_volume = false
extend_attached_encrypted_volume = false
EOF
)

cd "$WORKSPACE"
[[ -d .stestr ]] || stestr init >/dev/null
if [[ $list == yes ]]; then
  tempest run --config-file etc/tempest.conf --include-list "$SELECTION" --exclude-list "$EXCLUDED" --list-tests
  exit 0
fi

say "running the selection in $SELECTION against $API (microversions $MIN_MV to $MAX_MV, region $REGION, $CONCURRENCY workers)"
t0=$SECONDS
rc=0
tempest run --config-file etc/tempest.conf --include-list "$SELECTION" --exclude-list "$EXCLUDED" --concurrency "$CONCURRENCY" || rc=$?
say "tempest run took $((SECONDS - t0)) s (exit code $rc); log $WORKSPACE/logs/tempest.log"

# The counts and each skipped test with Tempest's reason, from stestr's record of this run.
stestr last --subunit | /usr/bin/python3 -c '
import sys, subunit, testtools
tests = testtools.StreamToDict(lambda t: results.append(t))
results = []
stream = subunit.ByteStreamToStreamResult(sys.stdin.buffer, non_subunit_name="stdout")
tests.startTestRun(); stream.run(tests); tests.stopTestRun()
real = [t for t in results if not t["id"].startswith("setUpClass") or t["status"] != "success"]
count = lambda s: sum(1 for t in real if t["status"] in s)
passed, skipped, failed = count({"success"}), count({"skip"}), count({"fail", "uxsuccess"})
for t in sorted(real, key=lambda t: t["id"]):
    if t["status"] == "skip":
        reason = t["details"].get("reason")
        print("SKIPPED", t["id"].split("[")[0], "--", reason.as_text().strip() if reason else "")
for t in sorted(real, key=lambda t: t["id"]):
    if t["status"] in ("fail", "uxsuccess"):
        print("FAILED ", t["id"].split("[")[0])
print(f"passed={passed} skipped={skipped} failed={failed}")
sys.exit(1 if failed or not passed else 0)
' || rc=1
exit $rc
