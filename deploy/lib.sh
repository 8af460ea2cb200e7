# Shared by deploy/install.sh and deploy/uninstall.sh (sourced, not run).
# shellcheck shell=bash disable=SC2034  # the constants are used by the scripts sourcing this

# Where things go on the target system. DESTDIR (staging for a package) is prepended
# when writing, never inside file contents; PREFIX moves only the virtualenv.
readonly SERVICE_USER=hal-o-swarm
readonly SERVICE_GROUP=hal-o-swarm
readonly ETC_DIR=/etc/hal-o-swarm
readonly STATE_DIR=/var/lib/hal-o-swarm
readonly UNIT_DIR=/etc/systemd/system
readonly BIN_DIR=/usr/local/bin
readonly UNITS=(hal-supervisor.service hal-agent.service)
readonly PROGRAMS=(hal-supervisor hal-agent halctl)

# A failing command (useradd's 9, pip's 2, ...) ends the script with 1, the documented
# "failed": its own code could read as another documented one (2 is a usage error).
# -E: functions and subshells inherit the trap.
set -E
trap 'exit 1' ERR

PROG=$(basename "$0")
DESTDIR=${DESTDIR:-}
PREFIX=/
DRY_RUN=0

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}
usage_error() {
	printf '%s: error: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2
	exit 2
}

# act MESSAGE COMMAND...: say what is done, then do it (only say it with --dry-run).
act() {
	local message=$1
	shift
	if ((DRY_RUN)); then
		say "would: $message"
	else
		say "$message"
		"$@"
	fi
}

# staged PATH: where PATH of the target system is written (under DESTDIR when staging).
staged() { printf '%s%s' "$DESTDIR" "$1"; }

opt_dir() {
	local prefix=${PREFIX%/}
	printf '%s/opt/hal-o-swarm' "$prefix"
}

# check_paths: --prefix and DESTDIR must be absolute (a relative one would land wherever
# the script happens to be run from).
check_paths() {
	case $PREFIX in
	/*) ;;
	*) usage_error "--prefix must be an absolute path, got '$PREFIX'" ;;
	esac
	if [[ -n $DESTDIR ]]; then
		case $DESTDIR in
		/*) ;;
		*) usage_error "--destdir (or DESTDIR) must be an absolute path, got '$DESTDIR'" ;;
		esac
		DESTDIR=${DESTDIR%/}
	fi
}

# check_root: a real install or removal writes /etc, /opt and /usr/local and manages
# users and units, so it needs root; staging into DESTDIR and --dry-run do not.
check_root() {
	if [[ -z $DESTDIR ]] && ((!DRY_RUN)) && [[ $(id -u) != 0 ]]; then
		die "must run as root to change this system (sudo $PROG ...), or stage into a directory with --destdir DIR"
	fi
}

# common_option ARG...: the options both scripts take (--prefix, --destdir, their --opt=DIR
# forms, --dry-run, -h/--help), read from the front of ARG...; sets TAKEN to how many
# arguments it used. Anything else is a usage error.
TAKEN=1
common_option() {
	TAKEN=1
	case $1 in
	--prefix | --destdir)
		(($# >= 2)) || usage_error "$1 needs a directory"
		if [[ $1 == --prefix ]]; then PREFIX=$2; else DESTDIR=$2; fi
		TAKEN=2
		;;
	--prefix=*) PREFIX=${1#*=} ;;
	--destdir=*) DESTDIR=${1#*=} ;;
	--dry-run) DRY_RUN=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) usage_error "unknown option '$1'" ;;
	esac
}

systemd_running() { [[ -z $DESTDIR && -d /run/systemd/system ]]; }
