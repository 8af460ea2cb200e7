#!/usr/bin/env bash
# Install halswarm from this source tree (docs/DEPLOYMENT.md).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/lib.sh
. "$SRC/deploy/lib.sh"

usage() {
	cat <<EOF
Usage: sudo $PROG --all | --supervisor | --agent | --halctl [options]
       $PROG --make-wheelhouse DIR

Installs halswarm from $SRC:
  a virtualenv in PREFIX/opt/hal-o-swarm/venv (pip, pinned by constraints.txt),
  links to its programs in $BIN_DIR,
  configs in $ETC_DIR (created with a random token only when absent; never replaced),
  state in $STATE_DIR, systemd units in $UNIT_DIR (enabled; started only with --start),
  a system user and group $SERVICE_USER for the daemons.

What to install (one or more):
  --all            supervisor, agent and halctl
  --supervisor     hal-supervisor and its unit
  --agent          hal-agent and its unit
  --halctl         the operator CLI only

Options:
  --prefix DIR     put the virtualenv under DIR/opt/hal-o-swarm (default /)
  --destdir DIR    stage everything under DIR for a package (also: DESTDIR=DIR); no
                   users, no ownership, no systemctl: prints what the package must do
  --wheelhouse DIR install the Python packages from the wheels in DIR only, without an
                   index (machines without access to PyPI; see docs/DEPLOYMENT.md)
  --make-wheelhouse DIR
                   only download and build every wheel an install needs into DIR (on
                   a machine with PyPI access, as any user); nothing is installed
  --skip-configs   create no configs (packages: a token made at build time would be
                   shared by every machine the package is installed on)
  --start          start the units (restart them if they run older code)
  --force          reinstall the Python packages even if this source is installed
  --dry-run        print what would be done, change nothing
  -h, --help       this help

Environment: PYTHON (default python3, must be >= 3.11), DESTDIR.
Exit codes: 0 done, 1 failed, 2 usage error.
EOF
}

WANT_SUPERVISOR=0
WANT_AGENT=0
WANT_HALCTL=0
START=0
FORCE=0
SKIP_CONFIGS=0
WHEELHOUSE=""
MAKE_WHEELHOUSE=""
PYTHON=${PYTHON:-python3}

parse_args() {
	while (($#)); do
		TAKEN=1
		case $1 in
		--all) WANT_SUPERVISOR=1 WANT_AGENT=1 WANT_HALCTL=1 ;;
		--supervisor) WANT_SUPERVISOR=1 ;;
		--agent) WANT_AGENT=1 ;;
		--halctl) WANT_HALCTL=1 ;;
		--wheelhouse | --make-wheelhouse)
			(($# >= 2)) || usage_error "$1 needs a directory"
			if [[ $1 == --wheelhouse ]]; then WHEELHOUSE=$2; else MAKE_WHEELHOUSE=$2; fi
			TAKEN=2
			;;
		--wheelhouse=*) WHEELHOUSE=${1#*=} ;;
		--make-wheelhouse=*) MAKE_WHEELHOUSE=${1#*=} ;;
		--skip-configs) SKIP_CONFIGS=1 ;;
		--start) START=1 ;;
		--force) FORCE=1 ;;
		*) common_option "$@" ;;
		esac
		shift "$TAKEN"
	done
	if [[ -n $MAKE_WHEELHOUSE ]]; then
		if ((WANT_SUPERVISOR || WANT_AGENT || WANT_HALCTL)) || [[ -n $WHEELHOUSE$DESTDIR ]]; then
			usage_error "--make-wheelhouse only downloads: give it no other option"
		fi
		return
	fi
	if ((!WANT_SUPERVISOR && !WANT_AGENT && !WANT_HALCTL)); then
		usage_error "say what to install: --all, --supervisor, --agent or --halctl"
	fi
	check_paths
	if [[ -n $WHEELHOUSE ]]; then
		[[ -d $WHEELHOUSE ]] || usage_error "--wheelhouse: no such directory: $WHEELHOUSE"
		WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
	fi
	if [[ -n $DESTDIR ]] && ((START)); then
		usage_error "--start cannot be used with --destdir (nothing is installed on this system)"
	fi
}

# check_python: the interpreter exists, is >= 3.11 and can make virtualenvs.
check_python() {
	local version
	command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: halswarm needs Python >= 3.11 (set PYTHON=/path/to/python3.11 or newer)"
	version=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) ||
		die "$PYTHON does not run: halswarm needs Python >= 3.11 (set PYTHON=/path/to/python3.11 or newer)"
	local major=${version%%.*} rest=${version#*.}
	local minor=${rest%%.*}
	if ((major < 3 || (major == 3 && minor < 11))); then
		die "$PYTHON is Python $version: halswarm needs Python >= 3.11 (set PYTHON=/path/to/python3.11 or newer)"
	fi
	"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
		die "$PYTHON $version cannot create virtualenvs (on Debian/Ubuntu: apt-get install python3-venv)"
	PYTHON_VERSION=$version
	if ((WANT_SUPERVISOR || WANT_AGENT)); then
		local base
		base=$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.base_prefix))')
		case $base/ in
		/home/* | /root/* | /run/user/*)
			warn "$PYTHON lives under a home directory ($base): the supervisor's unit hides home directories (ProtectHome=yes) and the service user may not be allowed in, so the daemons may not start; use a Python outside home directories (e.g. PYTHON=/usr/bin/python3)"
			;;
		esac
	fi
}

helper() { "$PYTHON" "$SRC/deploy/helpers.py" "$@"; }

# ensure_dir PATH MODE [OWNER:GROUP]: create it, or fix its mode and owner (ownership
# only on a real install: when staging the user may not exist).
ensure_dir() {
	local path=$1 mode=$2 owner=${3:-}
	local target
	target=$(staged "$path")
	if [[ ! -d $target ]]; then
		act "create $path (mode $mode${owner:+, $owner})" install -d -m "$mode" "$target"
		if [[ -n $owner && -z $DESTDIR ]] && ((!DRY_RUN)); then chown "$owner" "$target"; fi
		return
	fi
	if [[ $(stat -c '%a' "$target") != "${mode#0}" ]]; then
		act "set mode $mode on $path" chmod "$mode" "$target"
	fi
	if [[ -n $owner && -z $DESTDIR && $(stat -c '%U:%G' "$target") != "$owner" ]]; then
		act "set owner $owner on $path" chown "$owner" "$target"
	fi
}

# make_dir PATH: create a system directory (/usr/local/bin...) if missing; an existing one
# is left as it is.
make_dir() {
	[[ -d $(staged "$1") ]] || act "create $1" install -d -m 0755 "$(staged "$1")"
}

ensure_user() {
	[[ -z $DESTDIR ]] || return 0
	if ! getent group "$SERVICE_GROUP" >/dev/null; then
		command -v groupadd >/dev/null || die "groupadd not found: create the system group $SERVICE_GROUP, then run again"
		act "create system group $SERVICE_GROUP" groupadd --system "$SERVICE_GROUP"
	fi
	if ! getent passwd "$SERVICE_USER" >/dev/null; then
		command -v useradd >/dev/null || die "useradd not found: create the system user $SERVICE_USER, then run again"
		local nologin
		nologin=$(command -v nologin || echo /usr/sbin/nologin)
		act "create system user $SERVICE_USER (home $STATE_DIR, no login)" \
			useradd --system --gid "$SERVICE_GROUP" --home-dir "$STATE_DIR" --no-create-home \
			--shell "$nologin" --comment "halswarm daemons" "$SERVICE_USER"
	fi
}

# install_venv: create the virtualenv and pip-install this source tree into it, unless
# the same source is already installed there with the same interpreter.
CODE_CHANGED=0
install_venv() {
	local venv target stamp wanted current=""
	venv=$(opt_dir)/venv
	target=$(staged "$venv")
	stamp=$target/.halswarm-installed
	wanted=$(helper fingerprint "$SRC")
	ensure_dir "$(opt_dir)" 0755
	if [[ -e $target ]]; then
		local venv_version
		venv_version=$("$target/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true)
		if [[ $venv_version == "$PYTHON_VERSION" ]]; then
			current=$(cat "$stamp" 2>/dev/null || true)
		else
			act "remove $venv (made with Python ${venv_version:-that no longer runs}; this install uses $PYTHON_VERSION)" \
				rm -rf "$target"
		fi
	fi
	if [[ $current == "$wanted" ]] && ((!FORCE)); then
		say "unchanged: $venv has $wanted (--force reinstalls)"
		return
	fi
	CODE_CHANGED=1
	if ((DRY_RUN)); then
		[[ -x $target/bin/python ]] || say "would: create virtualenv $venv with $PYTHON (Python $PYTHON_VERSION)"
		say "would: pip install halswarm into $venv ($wanted; dependencies pinned by constraints.txt)"
		return
	fi
	[[ -x $target/bin/python ]] || act "create virtualenv $venv with $PYTHON (Python $PYTHON_VERSION)" "$PYTHON" -m venv "$target"
	# pip builds in the source directory: build a copy, so no build/ or *.egg-info owned
	# by root is left in the (user's) checkout.
	BUILD_DIR=$(mktemp -d)
	trap 'rm -rf "$BUILD_DIR"' EXIT
	helper stage "$SRC" "$BUILD_DIR/src"
	local pip=("$target/bin/python" -m pip install --quiet --disable-pip-version-check --no-input
		--constraint "$SRC/constraints.txt")
	[[ -z $WHEELHOUSE ]] || pip+=(--no-index --find-links "$WHEELHOUSE")
	# Under DESTDIR the byte code is compiled after relocation, with the final paths.
	[[ -z $DESTDIR ]] || pip+=(--no-compile)
	act "pip install halswarm into $venv ($wanted; dependencies pinned by constraints.txt${WHEELHOUSE:+, from $WHEELHOUSE only})" \
		"${pip[@]}" "$BUILD_DIR/src"
	if [[ -n $DESTDIR ]]; then
		helper relocate "$target" "$target" "$venv" >/dev/null
		act "compile byte code in $venv with its final paths" \
			"$target/bin/python" -m compileall -q -f -j 0 -s "$DESTDIR" -p / "$target/lib"
	fi
	printf '%s\n' "$wanted" >"$stamp"
}

# make_wheelhouse DIR: every wheel an install needs (halswarm's dependencies as pinned
# and its build backend), for install.sh --wheelhouse DIR on a machine without PyPI.
make_wheelhouse() {
	local dir=$1
	"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (on Debian/Ubuntu: apt-get install python3-pip)"
	local requires=()
	mapfile -t requires < <(helper build-requires "$SRC")
	if ((DRY_RUN)); then
		say "would: download and build wheels into $dir (dependencies pinned by constraints.txt, build backend: ${requires[*]})"
		return
	fi
	mkdir -p "$dir"
	BUILD_DIR=$(mktemp -d)
	trap 'rm -rf "$BUILD_DIR"' EXIT
	helper stage "$SRC" "$BUILD_DIR/src"
	act "download and build wheels into $dir (dependencies pinned by constraints.txt, build backend: ${requires[*]})" \
		"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-input --constraint "$SRC/constraints.txt" \
		--wheel-dir "$dir" "$BUILD_DIR/src" "${requires[@]}"
	say "Copy $dir and this source tree to the target, then: sudo ./deploy/install.sh --all --wheelhouse DIR"
	say "(the wheels are for this machine's Python $PYTHON_VERSION and architecture: the target needs the same)"
}

install_docs() {
	local doc
	doc=$(opt_dir)/doc
	ensure_dir "$doc" 0755
	local name
	for name in DEPLOYMENT.md ROLLBACK.md; do
		install_file "$SRC/docs/$name" "$doc/$name" 0644
	done
}

# install_file SOURCE PATH MODE: copy when absent or different.
CHANGED_FILES=0
install_file() {
	local source=$1 path=$2 mode=$3
	local target
	target=$(staged "$path")
	if [[ -f $target ]] && cmp -s "$source" "$target"; then
		[[ $(stat -c '%a' "$target") == "${mode#0}" ]] || act "set mode $mode on $path" chmod "$mode" "$target"
		return
	fi
	CHANGED_FILES=$((CHANGED_FILES + 1))
	act "$([[ -e $target ]] && echo update || echo install) $path" install -m "$mode" "$source" "$target"
}

link_programs() {
	local venv program link target
	venv=$(opt_dir)/venv
	make_dir "$BIN_DIR"
	for program in "$@"; do
		link=$(staged "$BIN_DIR/$program")
		target=$venv/bin/$program
		if [[ -L $link && $(readlink "$link") == "$target" ]]; then
			continue
		fi
		if [[ -e $link || -L $link ]] && ! [[ -L $link && $(readlink "$link") == */hal-o-swarm/venv/bin/* ]]; then
			die "$BIN_DIR/$program exists and is not a link into a halswarm virtualenv: move it away, then run again"
		fi
		act "link $BIN_DIR/$program -> $target" ln -sfn "$target" "$link"
	done
}

# write_config KIND: create ETC_DIR/KIND.config.json from the example when absent.
write_config() {
	local kind=$1
	local path=$ETC_DIR/$kind.config.json
	local target
	target=$(staged "$path")
	if [[ -e $target ]]; then
		say "unchanged: $path exists (never replaced)"
		return
	fi
	if ((DRY_RUN)); then
		say "would: create $path from examples/$kind.config.json with a new random token (mode 0640, root:$SERVICE_GROUP)"
		return
	fi
	local tmp
	tmp=$(staged "$ETC_DIR")/.$kind.config.json.new
	rm -f "$tmp"
	local where=""
	if [[ $kind == supervisor ]]; then
		helper supervisor-config "$SRC/examples/supervisor.config.json" "$tmp"
	else
		where=$(helper agent-config "$SRC/examples/agent.config.json" "$tmp" "$STATE_DIR" \
			"$(staged "$ETC_DIR/supervisor.config.json")")
	fi
	chmod 0640 "$tmp"
	[[ -n $DESTDIR ]] || chown "root:$SERVICE_GROUP" "$tmp"
	mv -n "$tmp" "$target"
	case $kind:$where in
	supervisor:*) say "create $path with a new random server.auth_token (mode 0640)" ;;
	agent:local) say "create $path: the local supervisor's URL and token, no projects yet (mode 0640)" ;;
	agent:*) say "create $path with a random auth_token: set supervisor_url and the supervisor's token (or a node token) there (mode 0640)" ;;
	esac
}

# check_config_readable PATH: the daemons read their config as the service user/group.
check_config_readable() {
	local target
	target=$(staged "$1")
	[[ -z $DESTDIR && -f $target ]] || return 0
	local mode owner group
	read -r mode owner group < <(stat -c '%a %U %G' "$target")
	local user_ok=$((8#$mode >> 6 & 4)) group_ok=$((8#$mode >> 3 & 4)) other_ok=$((8#$mode & 4))
	if [[ $owner == "$SERVICE_USER" ]] && ((user_ok)); then return 0; fi
	if [[ $group == "$SERVICE_GROUP" ]] && ((group_ok)); then return 0; fi
	((other_ok)) && return 0
	warn "$1 is not readable by $SERVICE_GROUP (mode $mode, $owner:$group): chgrp $SERVICE_GROUP $1 && chmod 0640 $1"
}

# install_unit NAME: render systemd/NAME for PREFIX and install it.
UNITS_CHANGED=0
install_unit() {
	local name=$1 rendered
	rendered=$(mktemp)
	sed "s|/opt/hal-o-swarm/|$(opt_dir)/|g" "$SRC/systemd/$name" >"$rendered"
	local before=$CHANGED_FILES
	install_file "$rendered" "$UNIT_DIR/$name" 0644
	rm -f "$rendered"
	((CHANGED_FILES == before)) || UNITS_CHANGED=1
}

# manage_units UNIT...: daemon-reload when a unit changed, enable, start with --start.
manage_units() {
	if [[ -n $DESTDIR ]]; then
		return
	fi
	if ! systemd_running; then
		say "systemd is not running here: enable and start $* with your init system"
		return
	fi
	((!UNITS_CHANGED)) || act "systemctl daemon-reload" systemctl daemon-reload
	local unit
	for unit in "$@"; do
		if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
			:
		else
			act "enable $unit (starts at boot)" systemctl enable --quiet "$unit"
		fi
		if systemctl is-active --quiet "$unit"; then
			if ((CODE_CHANGED || UNITS_CHANGED)); then
				if ((START)); then
					act "restart $unit (new version)" systemctl restart "$unit"
				else
					say "note: $unit runs the previous version: systemctl restart $unit"
				fi
			fi
		elif ((START)); then
			act "start $unit" systemctl start "$unit" || die "$unit did not start: journalctl -u $unit -n 50"
		fi
	done
}

post_install_notes() {
	local units=("$@")
	say ""
	if [[ -n $DESTDIR ]]; then
		say "Staged into $DESTDIR. The package's post-install step must:"
		if ((${#units[@]})); then
			say "  groupadd --system $SERVICE_GROUP"
			say "  useradd --system --gid $SERVICE_GROUP --home-dir $STATE_DIR --no-create-home --shell /usr/sbin/nologin $SERVICE_USER"
			say "  chown root:$SERVICE_GROUP $ETC_DIR $ETC_DIR/*.config.json   # modes are set: 0750 and 0640"
			say "  chown $SERVICE_USER:$SERVICE_GROUP $STATE_DIR"
			((SKIP_CONFIGS)) || say "  (or ship no configs: their token was made now; see --skip-configs)"
			say "  systemctl daemon-reload && systemctl enable ${units[*]}"
		fi
		say "The virtualenv runs $("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))'): the target needs that interpreter at that path."
		return
	fi
	((DRY_RUN)) && return
	say "Done. Next:"
	if ((WANT_SUPERVISOR)); then
		say "  supervisor: review $ETC_DIR/supervisor.config.json (TLS: docs/SECURITY.md), then systemctl start hal-supervisor"
	fi
	if ((WANT_AGENT)); then
		say "  agent: add projects to $ETC_DIR/agent.config.json, make their directories writable"
		say "         (systemctl edit hal-agent: ReadWritePaths=DIR ...), then systemctl start hal-agent"
	fi
	if ((WANT_HALCTL)); then
		say "  halctl: set HALCTL_URL and HALCTL_TOKEN (or ~/.config/halswarm/halctl.json); see docs/DEPLOYMENT.md"
	fi
	say "  logs: journalctl -u hal-supervisor -u hal-agent -f"
}

main() {
	parse_args "$@"
	[[ -n $MAKE_WHEELHOUSE ]] || check_root
	# Files made here are read by the service user: do not inherit a strict umask (sudo).
	umask 022
	# The virtualenv's pip and Python must see only the virtualenv.
	unset PYTHONPATH PYTHONHOME
	check_python
	if [[ -n $MAKE_WHEELHOUSE ]]; then
		make_wheelhouse "$MAKE_WHEELHOUSE"
		return
	fi
	[[ -f $SRC/pyproject.toml && -d $SRC/halswarm && -d $SRC/systemd ]] ||
		die "$SRC is not a halswarm source tree (pyproject.toml, halswarm/, systemd/ missing)"
	say "halswarm installer: $([[ -n $DESTDIR ]] && echo "staging into $DESTDIR" || echo "installing on this system")$( ((DRY_RUN)) && echo " (dry run: nothing is changed)")"

	local programs=() daemons=()
	((!WANT_SUPERVISOR)) || { programs+=(hal-supervisor) && daemons+=(hal-supervisor.service); }
	((!WANT_AGENT)) || { programs+=(hal-agent) && daemons+=(hal-agent.service); }
	((!WANT_HALCTL)) || programs+=(halctl)

	((${#daemons[@]} == 0)) || ensure_user
	install_venv
	install_docs
	link_programs "${programs[@]}"
	if ((${#daemons[@]})); then
		ensure_dir "$ETC_DIR" 0750 "root:$SERVICE_GROUP"
		if ((!SKIP_CONFIGS)); then
			((!WANT_SUPERVISOR)) || write_config supervisor
			((!WANT_AGENT)) || write_config agent
		fi
		((!WANT_SUPERVISOR)) || check_config_readable "$ETC_DIR/supervisor.config.json"
		((!WANT_AGENT)) || check_config_readable "$ETC_DIR/agent.config.json"
		ensure_dir "$STATE_DIR" 0750 "$SERVICE_USER:$SERVICE_GROUP"
		make_dir "$UNIT_DIR"
		local unit
		for unit in "${daemons[@]}"; do
			install_unit "$unit"
		done
		manage_units "${daemons[@]}"
	fi
	post_install_notes "${daemons[@]}"
}

main "$@"
