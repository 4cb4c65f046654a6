#!/usr/bin/env bash
# A PostgreSQL server on this machine, from Debian's packages, for CI and for trying the team
# set-up (one MLflow server and the Optuna studies on one database) without a shared one. It
# listens on 127.0.0.1 only and has a role `repro` (password `repro`) that may create databases:
# the tests make one database per test through it. Run as root; running it again is harmless.
set -euo pipefail

[[ $(id -u) == 0 ]] || { echo "postgres-local.sh: must run as root" >&2; exit 1; }

if ! command -v pg_ctlcluster >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# Debian's package makes a cluster named main for its one installed major version.
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
[[ -d /etc/postgresql/$version/main ]] || pg_createcluster "$version" main >/dev/null
conf=/etc/postgresql/$version/main/postgresql.conf
grep -q "^listen_addresses = '127.0.0.1'" "$conf" || echo "listen_addresses = '127.0.0.1'" >>"$conf"

pg_ctlcluster "$version" main status >/dev/null 2>&1 || pg_ctlcluster "$version" main start

deadline=$((SECONDS + 30))
until pg_isready -q -h 127.0.0.1; do
  (( SECONDS < deadline )) || { echo "postgres-local.sh: PostgreSQL did not answer on 127.0.0.1" >&2; exit 1; }
  sleep 0.5
done
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'repro') THEN
    CREATE ROLE repro LOGIN CREATEDB PASSWORD 'repro';
  END IF;
END $$;
SQL
echo "PostgreSQL $version on 127.0.0.1:5432; role repro may create databases"
