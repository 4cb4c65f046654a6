#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, from Debian's packages, for CI and for trying the
# slurm executor without a cluster. Run as root; running it again is harmless (daemons that are
# already up are left alone). slurmdbd + MariaDB are there so that sacct, and hence submitit's
# job states, work; without them submitit still gets results but reports every state UNKNOWN.
set -euo pipefail

[[ $(id -u) == 0 ]] || { echo "slurm-local.sh: must run as root" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
# Leave the OS some memory; slurmd refuses to start when RealMemory exceeds what it sees.
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /run/mysqld

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=repro
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# Containers and CI boxes have no cgroup delegation: track processes by parent id, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
MessageTimeout=30
JobRequeue=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeHostname=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF

cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf

running() { pgrep -x "$1" >/dev/null; }
wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { echo "slurm-local.sh: timed out waiting for: $*" >&2; return 1; }
    sleep 0.5
  done
}

if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key /run/munge
chmod 400 /etc/munge/munge.key
running munged || runuser -u munge -- munged
wait_for 10 munge -n

chown mysql:mysql /run/mysqld
if ! running mariadbd; then
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
  runuser -u mysql -- mariadbd --skip-networking=0 --bind-address=127.0.0.1 >/var/log/slurm/mariadb.log 2>&1 &
fi
wait_for 30 mariadb -e 'select 1'
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

running slurmdbd || slurmdbd
wait_for 30 sacctmgr -n list cluster
sacctmgr -i -Q add cluster repro >/dev/null 2>&1 || true

running slurmctld || slurmctld
running slurmd || slurmd
wait_for 30 bash -c 'sinfo -h -o %T | grep -qE "^(idle|mixed|allocated)"'
scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
sinfo
