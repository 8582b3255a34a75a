#!/usr/bin/env bash
# Installs the Debian packages csat's demo and tests need, on Debian bookworm, as root.
#
# Bookworm ships no Asterisk; bullseye-security's asterisk 16 installs cleanly on it. We add
# the bullseye suites by reusing the mirror URIs already configured on this machine, so no
# host name is ever written into the repository.
set -euo pipefail

APT_PACKAGES=(asterisk sip-tester espeak-ng sox poppler-utils make)
# Headless chromium drives the dashboard in the tests; CSAT_WITH_BROWSER=0 skips it (e.g. a PBX host).
if [ "${CSAT_WITH_BROWSER:-1}" = "1" ]; then
  APT_PACKAGES+=(chromium)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system-deps: all Debian packages present"
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  echo "install-system-deps: missing packages (${missing[*]}); run as root or install them" >&2
  exit 1
fi

list=/etc/apt/sources.list.d/csat-bullseye.list
if [ ! -f "$list" ]; then
  # Collect the configured mirror URIs (deb822 .sources and one-line .list formats).
  main_uri=""
  sec_uri=""
  while read -r uri; do
    case "$uri" in
      *debian-security*) [ -z "$sec_uri" ] && sec_uri="$uri" ;;
      *debian*) [ -z "$main_uri" ] && main_uri="$uri" ;;
    esac
  done < <(
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{for (i=2;i<=NF;i++) print $i}';
      grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{for (i=2;i<=NF;i++) if ($i ~ /:\/\//) {print $i; break}}'; } || true
  )
  if [ -z "$main_uri" ]; then
    echo "install-system-deps: no Debian mirror found in the apt sources; add bullseye + bullseye-security by hand" >&2
    exit 1
  fi
  [ -n "$sec_uri" ] || sec_uri="${main_uri%/debian}/debian-security"
  {
    echo "# added by csat scripts/install-system-deps.sh: asterisk 16 comes from bullseye-security"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $main_uri bullseye main"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $sec_uri bullseye-security main"
  } > "$list"
  # Keep bookworm preferred for everything else.
  cat > /etc/apt/preferences.d/csat-bullseye <<'PREF'
Package: *
Pin: release n=bullseye
Pin-Priority: 100

Package: *
Pin: release n=bullseye-security
Pin-Priority: 100
PREF
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-system-deps: installed ${missing[*]}"
