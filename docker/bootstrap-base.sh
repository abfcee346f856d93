#!/usr/bin/env bash
# Makes the base image the Dockerfiles start FROM (debian:bookworm-slim) when the Docker engine
# does not have it and no container registry can be reached: debootstrap a minimal Debian from
# the Debian mirror this machine's apt already uses, trim it as Debian's -slim images are
# trimmed, and `docker import` it under the tag the Dockerfiles name. Where a registry is
# reachable, `docker pull debian:bookworm-slim` gives the official image and this script is not
# needed: the Dockerfiles stay standard.
#
# Usage: docker/bootstrap-base.sh [TAG]      (default debian:bookworm-slim; does nothing when the
#                                              engine already has TAG)
set -euo pipefail

tag=${1:-debian:bookworm-slim}
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "bootstrap-base: $tag already present"
  exit 0
fi
suite=${tag#*:}
suite=${suite%-slim}

if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# The mirror apt is configured with (deb822 .sources or one-line .list), never a host of ours.
mirror=$(
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'
  } | grep -v -- '-security' | grep '/debian/\?$' | head -n 1
) || true
if [ -z "$mirror" ]; then
  echo "bootstrap-base: no Debian mirror found in apt's sources" >&2
  exit 2
fi

root=$(mktemp -d /var/tmp/shardfeed-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "bootstrap-base: debootstrap $suite from apt's mirror into $root" >&2
debootstrap --variant=minbase --include=ca-certificates "$suite" "$root" "$mirror" >&2

# As Debian's -slim images: no documentation, manuals or locales, no apt lists or caches; dpkg
# told not to install them again later.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
find "$root/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
       "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/var/log/*.log "$root"/tmp/* "$root"/dev/*

tar --numeric-owner -C "$root" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    - "$tag" >/dev/null
echo "bootstrap-base: made $tag ($(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=iec))"
