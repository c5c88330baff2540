#!/usr/bin/env bash
# Installs the Debian packages of tools/apt-packages.txt that are missing (idempotent; quiet
# when all are present). Without root or sudo it prints the command to run and exits 0: the
# tests needing a package then skip with a reason.
set -euo pipefail
list="$(dirname "$0")/apt-packages.txt"
mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "system_deps: no apt-get here; install these (or your distribution's equivalents) for the full test suite: ${missing[*]}"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
else
    echo "system_deps: missing Debian packages (tests needing them will skip): ${missing[*]}"
    echo "    install them with: sudo apt-get install -y ${missing[*]}"
    exit 0
fi
echo "system_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
