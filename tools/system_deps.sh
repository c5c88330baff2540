#!/usr/bin/env bash
# Installs the missing Debian packages of a list (default tools/apt-packages.txt; idempotent,
# quiet when all are present).
#   tools/system_deps.sh [LIST] [--required]
# Without root or sudo it prints the command to run: by default it then exits 0 (the tests
# needing a package skip with a reason); with --required it exits 1 (the caller cannot run
# without them).
set -euo pipefail
list="$(dirname "$0")/apt-packages.txt"
required=0
for arg in "$@"; do
    case "$arg" in
        --required) required=1 ;;
        *) list="$arg" ;;
    esac
done
mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$' | sort -u)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "system_deps: no apt-get here; install these (or your distribution's equivalents): ${missing[*]}"
    exit "$required"
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
else
    if [ "$required" -eq 1 ]; then
        echo "system_deps: missing Debian packages (from $list): ${missing[*]}"
    else
        echo "system_deps: missing Debian packages (tests needing them will skip): ${missing[*]}"
    fi
    echo "    install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit "$required"
fi
echo "system_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
