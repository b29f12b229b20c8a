#!/usr/bin/env bash
# Submit a pipeline of wsss stages as a SLURM dependency chain: stage i+1 starts only after stage i
# finished with exit code 0 (--dependency=afterok), and is cancelled if stage i fails.
#
#   slurm/pipeline.sh [--dry-run] [--after JOBID] STAGES_FILE [SBATCH_OPTION...]
#
# STAGES_FILE: one stage per line, run.py overrides as in an experiments file (slurm/array.sbatch),
# optionally preceded by sbatch options for that stage and ' -- ':
#
#   stage=pnoc dataset=voc12 backbone=resnest269 run_name=default
#   --gpus-per-node=1 --ntasks-per-node=1 -- experiment=voc12_ccamh_rs269 trainer.devices=1
#
# Blank lines and '#' lines are skipped. SBATCH_OPTIONs after the file go to every stage (e.g.
# --partition=gpu, or --gpus-per-node=0 on the CPU-only local cluster); per-line options come after
# them and win. Each stage runs slurm/array.sbatch with WSSS_LINE=<its index>, so the environment
# (WSSS_VENV, WSSS_EXTRA, WSSS_ENTRY) is exported to it.
# Logs: $WSSS_LOG_DIR/<job name>_<job id>.out (default logs/slurm under the repo root).
# --after JOBID makes the first stage wait for an already submitted job.
#
# Prints one line per stage on stdout: "<job id> <job name> <overrides>".
# --dry-run prints the sbatch commands instead of submitting (no SLURM needed).
set -euo pipefail

die() { echo "pipeline.sh: error: $*" >&2; exit 2; }
usage() { sed -n '5p' "$0" | sed 's/^# *//' >&2; exit 2; }

dry_run=0
previous=""
while (($#)); do
  case $1 in
    --dry-run) dry_run=1; shift ;;
    --after)
      [[ ${2:-} =~ ^[0-9]+$ ]] || die "--after needs a numeric job id (got '${2:-}')"
      previous=$2
      shift 2
      ;;
    -h | --help) usage ;;
    *) break ;;
  esac
done
(($#)) || usage
stages_file=$1
shift
common_opts=("$@")

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ -f $stages_file ]] || die "stages file '$stages_file' not found"
stages_file=$(cd "$(dirname "$stages_file")" && pwd)/$(basename "$stages_file")
mapfile -t lines < <(grep -vE '^[[:space:]]*(#|$)' "$stages_file" || true)
((${#lines[@]} > 0)) || die "stages file '$stages_file' has no stage lines"
((dry_run)) || command -v sbatch >/dev/null || die "sbatch not found (is SLURM installed? try --dry-run)"

cd "$repo_root"
log_dir=${WSSS_LOG_DIR:-logs/slurm}
((dry_run)) || mkdir -p "$log_dir"
ids=()
for i in "${!lines[@]}"; do
  line=${lines[$i]}
  stage_opts=()
  if [[ $line == *" -- "* ]]; then
    mapfile -t stage_opts < <(printf '%s\n' "${line%% -- *}" | xargs -r printf '%s\n')
    line=${line#* -- }
  fi
  stage=$(grep -oE '(^|[[:space:]])stage=[^[:space:]]+' <<<"$line" | head -n 1 | sed 's/.*stage=//' || true)
  name=wsss-${stage:-step$i}
  cmd=(sbatch --parsable --job-name="$name" --output="$log_dir/%x_%j.out" --export="ALL,WSSS_LINE=$i")
  [[ -n $previous ]] && cmd+=(--dependency="afterok:$previous" --kill-on-invalid-dep=yes)
  cmd+=("${common_opts[@]}" "${stage_opts[@]}" slurm/array.sbatch "$stages_file")
  if ((dry_run)); then
    printf '%q ' "${cmd[@]}" >&2
    echo >&2
    job_id="DRYRUN$i"
  else
    job_id=$("${cmd[@]}") || die "sbatch failed for stage $i ($line)"
    job_id=${job_id%%;*}
  fi
  echo "$job_id $name $line"
  ids+=("$job_id")
  previous=$job_id
done
((dry_run)) && echo "pipeline.sh: dry run, nothing submitted" >&2 && exit 0
echo "pipeline.sh: submitted ${#ids[@]} stage(s); cancel all with: scancel ${ids[*]}" >&2
