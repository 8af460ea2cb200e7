#!/usr/bin/env bash
# Remove what deploy/install.sh installed (docs/DEPLOYMENT.md, "Uninstall").
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/lib.sh
. "$SRC/deploy/lib.sh"

usage() {
	cat <<EOF
Usage: sudo $PROG [--purge] [options]

Stops and disables the halswarm units, removes them, the links in $BIN_DIR and the
virtualenv in PREFIX/opt/hal-o-swarm. Keeps the configs ($ETC_DIR), the data
($STATE_DIR), unit drop-ins and the $SERVICE_USER user unless --purge.

Options:
  --purge          also remove $ETC_DIR, $STATE_DIR (the database and the agent
                   outbox: take a backup first), unit drop-ins, the user and group
  --prefix DIR     the --prefix given to install.sh (default /)
  --destdir DIR    remove from a staging directory (also: DESTDIR=DIR)
  --dry-run        print what would be done, change nothing
  -h, --help       this help

Exit codes: 0 done, 1 failed, 2 usage error.
EOF
}

PURGE=0

parse_args() {
	while (($#)); do
		TAKEN=1
		case $1 in
		--purge) PURGE=1 ;;
		*) common_option "$@" ;;
		esac
		shift "$TAKEN"
	done
	check_paths
}

# remove PATH...: delete files or trees that exist.
remove() {
	local path
	for path in "$@"; do
		if [[ -e $(staged "$path") || -L $(staged "$path") ]]; then
			act "remove $path" rm -rf "$(staged "$path")"
		fi
	done
}

stop_units() {
	systemd_running || return 0
	local unit
	for unit in "${UNITS[@]}"; do
		[[ -e $UNIT_DIR/$unit ]] || continue
		act "stop and disable $unit" systemctl disable --now --quiet "$unit"
	done
}

remove_links() {
	local venv program link
	venv=$(opt_dir)/venv
	for program in "${PROGRAMS[@]}"; do
		link=$(staged "$BIN_DIR/$program")
		[[ -L $link ]] || continue
		# Only our links: another halctl on PATH is not ours to delete.
		if [[ $(readlink "$link") == "$venv/bin/$program" ]]; then
			remove "$BIN_DIR/$program"
		else
			say "kept: $BIN_DIR/$program points elsewhere ($(readlink "$link"))"
		fi
	done
}

remove_user() {
	[[ -z $DESTDIR ]] || return 0
	if getent passwd "$SERVICE_USER" >/dev/null; then
		act "remove user $SERVICE_USER" userdel "$SERVICE_USER"
	fi
	if getent group "$SERVICE_GROUP" >/dev/null; then
		act "remove group $SERVICE_GROUP" groupdel "$SERVICE_GROUP"
	fi
}

main() {
	parse_args "$@"
	check_root
	say "halswarm uninstaller: $([[ -n $DESTDIR ]] && echo "removing from $DESTDIR" || echo "removing from this system")$( ((DRY_RUN)) && echo " (dry run: nothing is changed)")"
	stop_units
	local unit units_removed=0
	for unit in "${UNITS[@]}"; do
		if [[ -e $(staged "$UNIT_DIR/$unit") ]]; then
			remove "$UNIT_DIR/$unit"
			units_removed=1
		fi
		((!PURGE)) || remove "$UNIT_DIR/$unit.d"
	done
	if ((units_removed)) && systemd_running; then
		act "systemctl daemon-reload" systemctl daemon-reload
	fi
	remove_links
	remove "$(opt_dir)/venv" "$(opt_dir)/doc"
	local opt
	opt=$(staged "$(opt_dir)")
	if [[ -d $opt ]] && [[ -z $(ls -A "$opt") ]]; then
		act "remove $(opt_dir)" rmdir "$opt"
	fi
	if ((PURGE)); then
		remove "$ETC_DIR" "$STATE_DIR"
		remove_user
	else
		local kept=()
		[[ ! -e $(staged "$ETC_DIR") ]] || kept+=("$ETC_DIR (configs)")
		[[ ! -e $(staged "$STATE_DIR") ]] || kept+=("$STATE_DIR (data)")
		if ((${#kept[@]})); then
			say "kept: ${kept[*]}; --purge removes them"
		fi
	fi
}

main "$@"
