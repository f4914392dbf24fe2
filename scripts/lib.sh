# Shared helpers for sekexe's scripts. Sourced, not executed.
# shellcheck shell=bash

SEKEXE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEKEXE_CACHE=${SEKEXE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/sekexe}

say() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo when it exists,
# otherwise stops with the command the user has to run themselves.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "needs root: run '$*' as root, then try again"
  fi
}

# Installs the Debian packages among "$@" that are not installed yet; does nothing (and needs
# no root) when all are present.
apt_install_missing() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing: ${missing[*]}"
  if [ -z "${SEKEXE_APT_UPDATED:-}" ]; then
    as_root apt-get update -qq >&2 || die "apt-get update failed"
    export SEKEXE_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "could not install ${missing[*]}"
}

# The address of the Debian archive this host's apt uses for its own release (suites are the
# callers' choice): derived, never written into the repository.
debian_archive() {
  local codename
  codename=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null \
    | awk -v c="$codename" '$2 == c { print $1; exit }' | grep .
}
