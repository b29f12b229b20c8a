# Environment for wsss jobs on SLURM. Source it (bash); do not execute it:
#
#   source slurm/env.sh
#
# Used by slurm/array.sbatch, slurm/pipeline.sh stages and the submitit launcher's `setup` lines.
# It activates the project's virtual environment and sets the process-level defaults a batch job needs.
#
#   WSSS_ROOT   repository root (default: the parent of this file's directory)
#   WSSS_VENV   virtual environment to activate (default: $WSSS_ROOT/.venv)
#
# Site specifics (module load cuda, proxy variables, scratch paths) go in slurm/site.sh, which is
# sourced last when it exists and is not tracked by git.
# Returns non-zero (without exiting the caller's shell) when the venv is missing.

_wsss_env_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export WSSS_ROOT=${WSSS_ROOT:-$(dirname "$_wsss_env_dir")}
export WSSS_VENV=${WSSS_VENV:-$WSSS_ROOT/.venv}

if [[ ! -f $WSSS_VENV/bin/activate ]]; then
  echo "slurm/env.sh: no virtual environment at WSSS_VENV=$WSSS_VENV (expected $WSSS_VENV/bin/activate);" \
    "create it or point WSSS_VENV at one" >&2
  unset _wsss_env_dir
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$WSSS_VENV/bin/activate"

# One intra-op thread pool per task, sized to the CPUs SLURM gave it (torch otherwise uses every core
# of the node, and N ranks per node oversubscribe it N times).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
export PYTHONUNBUFFERED=1
export HYDRA_FULL_ERROR=1

if [[ -f $_wsss_env_dir/site.sh ]]; then
  # shellcheck disable=SC1091
  source "$_wsss_env_dir/site.sh"
fi
unset _wsss_env_dir
