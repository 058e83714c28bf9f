#!/usr/bin/env bash
# Installs the Debian 12 packages that the build, the tests and `make run` need, and only those
# that are missing. Idempotent: when everything is present it prints one line and does nothing
# else (no apt-get update, no sudo). Uses sudo when not root.
set -euo pipefail

PACKAGES=(
    # build
    build-essential cmake pkg-config
    libh2o-evloop-dev # bench/designs.sh only: the h2o design measured against epp_http
    libmicrohttpd-dev librdkafka-dev libpq-dev libyajl-dev libcurl4-openssl-dev zlib1g-dev
    libroaring-dev
    # run and test
    postgresql postgresql-contrib prometheus kcat wrk nginx-light
    # Apache Kafka (scripts/kafka.sh): Java 17 runs the broker, Maven fetches its jars
    openjdk-17-jre-headless maven
    clang clang-format clang-tidy libclang-rt-14-dev valgrind shellcheck
    docker-compose chromium
    python3 python3-psycopg2 python3-confluent-kafka python3-yaml python3-venv
    curl git ca-certificates
)

# Node.js and npm (the analytics dashboard build and its browser test) may come from elsewhere
# (nodesource, nvm); Debian's nodejs package conflicts with those, so it is only wanted when
# neither command exists.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
    case "$status" in
    ii*) ;;
    *) missing+=("$pkg") ;;
    esac
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "install-deps: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
        exit 1
    }
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
echo "install-deps: done"
