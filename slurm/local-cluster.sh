#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for CI and the `slurm` tests.
#
#   sudo slurm/local-cluster.sh [up]    install (if missing), configure, start, wait until the node is idle
#   sudo slurm/local-cluster.sh status  print daemons and node state; exit 0 only when the node takes jobs
#   sudo slurm/local-cluster.sh down    stop slurmctld, slurmd and munged
#
# Debian/Ubuntu only (apt-get), run as root. It does not use systemd: containers and CI VMs rarely run it
# as PID 1, so the daemons are started directly and tracked by their pid files.
# Idempotent: `up` on a running cluster rewrites slurm.conf, restarts the daemons only if it changed,
# and returns as soon as the node answers.
#
# The cluster: one node named $(hostname -s) with all CPUs and memory, one partition `debug` (default),
# select/cons_tres with CR_CPU_Memory, proctrack/linuxproc and task/none (no cgroups), no accounting
# (sacct prints warnings; submitit and `sbatch --wait` do not need it), ReturnToService=2, 7-day MaxTime.
#
# Environment knobs:
#   SLURM_LOCAL_WAIT_S   seconds to wait for the node to become idle (default 60)
#   SLURM_LOCAL_NO_INSTALL=1   fail instead of calling apt-get when the packages are missing
set -euo pipefail

readonly CONF_DIR=/etc/slurm
readonly CONF_FILE=$CONF_DIR/slurm.conf
readonly STATE_DIR=/var/lib/slurm/slurmctld
readonly SPOOL_DIR=/var/spool/slurmd
readonly LOG_DIR=/var/log/slurm
readonly CTLD_PID=/run/slurmctld.pid
readonly SLURMD_PID=/run/slurmd.pid
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_PID=/run/munge/munged.pid
readonly WAIT_S=${SLURM_LOCAL_WAIT_S:-60}
NODE=$(hostname -s)
readonly NODE

log() { echo "[local-cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (got uid $(id -u)); try: sudo $0 ${1:-up}"
}

# --- packages -------------------------------------------------------------------------------------

packages_present() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
    && command -v munged >/dev/null
}

install_packages() {
  packages_present && return 0
  [[ ${SLURM_LOCAL_NO_INSTALL:-0} == 1 ]] && die "slurm-wlm/munge missing and SLURM_LOCAL_NO_INSTALL=1"
  command -v apt-get >/dev/null || die "slurm-wlm/munge missing and no apt-get to install them"
  log "installing slurm-wlm and munge with apt-get"
  # Keep the maintainer scripts from starting services; this script starts them itself.
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge \
      >/dev/null 2>&1 \
      || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge \
          >/dev/null; }
  } || rc=$?
  [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
  [[ $rc == 0 ]] || die "apt-get install slurm-wlm munge failed (rc=$rc)"
  packages_present || die "slurm-wlm installed but slurmctld/slurmd/sinfo/munged still not on PATH"
}

# --- process helpers ------------------------------------------------------------------------------

# pid_alive PIDFILE NAME: the pid in PIDFILE is a live process whose command name is NAME.
pid_alive() {
  local pidfile=$1 name=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name"* ]]
}

# stop_pid PIDFILE NAME: SIGTERM the daemon of PIDFILE, wait up to 10 s, then SIGKILL.
stop_pid() {
  local pidfile=$1 name=$2 pid i
  pid_alive "$pidfile" "$name" || { rm -f "$pidfile"; return 0; }
  pid=$(<"$pidfile")
  kill "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && { log "$name ($pid) ignored SIGTERM, killing"; kill -9 "$pid" || true; }
  rm -f "$pidfile"
}

# --- munge ----------------------------------------------------------------------------------------

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 0755 /run/munge
  if [[ ! -s $MUNGE_KEY ]]; then
    log "creating $MUNGE_KEY"
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$MUNGE_KEY" --force
    else
      dd if=/dev/urandom bs=1 count=1024 of="$MUNGE_KEY" status=none
    fi
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 0400 "$MUNGE_KEY"
  munge_works && return 0
  stop_pid "$MUNGE_PID" munged
  # --force: a socket left by a munged that died (e.g. a container restart) would otherwise block it.
  runuser -u munge -- munged --force --pid-file="$MUNGE_PID" \
    || die "munged failed to start; see /var/log/munge/munged.log"
  local i
  for i in $(seq 50); do
    munge_works && return 0
    sleep 0.1
  done
  die "munged started but 'munge -n | unmunge' fails; see /var/log/munge/munged.log"
}

# --- slurm.conf -----------------------------------------------------------------------------------

# Prints the slurm.conf for this machine. CPUs/RealMemory come from `slurmd -C`, the values slurmd
# itself checks at registration (a larger RealMemory would drain the node). The socket/core layout is
# left out on purpose: with CR_CPU each logical CPU is then a separate allocation unit.
render_conf() {
  local hw cpus mem
  hw=$(slurmd -C | head -n 1)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  [[ -n $cpus && -n $mem ]] || die "could not parse 'slurmd -C' output: $hw"
  cat <<EOF
# Written by slurm/local-cluster.sh; rewritten on every 'up' (edit the script, not this file).
ClusterName=wsss-local
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem / cpus))
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=10
MinJobAge=300
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=7-00:00:00 State=UP
EOF
}

# write_conf: installs the rendered conf; returns 0 if the file changed, 1 if it was already current.
write_conf() {
  install -d -m 0755 "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
  local new
  new=$(mktemp)
  render_conf >"$new"
  if [[ -f $CONF_FILE ]] && cmp -s "$new" "$CONF_FILE"; then
    rm -f "$new"
    return 1
  fi
  install -m 0644 "$new" "$CONF_FILE"
  rm -f "$new"
  log "wrote $CONF_FILE"
  return 0
}

# --- cluster --------------------------------------------------------------------------------------

node_state() { timeout 5 sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n 1; }

start_slurm() {
  local changed=$1
  if [[ $changed == 1 ]]; then
    stop_pid "$SLURMD_PID" slurmd
    stop_pid "$CTLD_PID" slurmctld
  fi
  pid_alive "$CTLD_PID" slurmctld || slurmctld || die "slurmctld failed; see $LOG_DIR/slurmctld.log"
  pid_alive "$SLURMD_PID" slurmd || slurmd || die "slurmd failed; see $LOG_DIR/slurmd.log"
}

# Waits until the node can take jobs (idle, mixed or allocated); resumes it when drained or down
# (ReturnToService=2 covers most cases; a drain from an earlier config does not clear by itself).
wait_ready() {
  local deadline=$((SECONDS + WAIT_S)) state resumed=0
  while ((SECONDS < deadline)); do
    state=$(node_state || true)
    case $state in
      idle | mix | alloc | comp) return 0 ;;
      drain* | drng | down* | fail*)
        if [[ $resumed == 0 ]]; then
          log "node $NODE is '$state', resuming it"
          scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
          resumed=1
        fi
        ;;
    esac
    sleep 1
  done
  log "node $NODE not ready after ${WAIT_S}s (state '${state:-no answer}'); last log lines:"
  tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
  return 1
}

status_line() {
  local state
  state=$(node_state || true)
  local pids="munged=$(cat "$MUNGE_PID" 2>/dev/null || echo -)"
  pids+=" slurmctld=$(cat "$CTLD_PID" 2>/dev/null || echo -)"
  pids+=" slurmd=$(cat "$SLURMD_PID" 2>/dev/null || echo -)"
  echo "local SLURM: node=$NODE state=${state:-down} partition=debug $pids"
  [[ $state =~ ^(idle|mix|alloc|comp) ]]
}

cmd_up() {
  require_root up
  local start=$SECONDS changed=0
  install_packages
  start_munge
  write_conf && changed=1
  start_slurm "$changed"
  wait_ready || die "cluster did not come up"
  status_line
  log "up in $((SECONDS - start)) s"
}

cmd_down() {
  require_root down
  stop_pid "$SLURMD_PID" slurmd
  stop_pid "$CTLD_PID" slurmctld
  stop_pid "$MUNGE_PID" munged
  echo "local SLURM: down"
}

cmd_status() {
  command -v sinfo >/dev/null || { echo "local SLURM: not installed"; return 1; }
  status_line
}

case ${1:-up} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  -h | --help | help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown subcommand '$1' (expected up, down or status)" ;;
esac
