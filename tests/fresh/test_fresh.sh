#!/usr/bin/env bash
# The first five minutes, on a bare Debian 12: bootstraps `debootstrap --variant=minbase bookworm`
# (what a debian:12 container is: no package lists, root), copies the checkout in and runs the
# README's two commands exactly as README.md writes them (the first ```sh block under each of
# its two "(one command)" headings):
#   1. command 1 as root, on the bare system;
#   2. command 2 (the tests) as root, after it;
#   3. command 1 again as a user with sudo, in the user's own copy, after emptying the package
#      lists and removing one of the packages it installs, so that its `sudo apt-get update` and
#      install run again.
# Fails if any of them fails. Needs root (chroot, mounts) and debootstrap; exit 77 (skipped)
# without them. The bootstrapped root is cached as a tarball (GPTOSS_FRESH_CACHE, default
# /var/cache/gptoss-fresh; refreshed after 30 days). Like a container runtime it gives the root
# /proc, /sys, /dev, /dev/pts, a tmpfs /dev/shm, the host's resolv.conf and an /etc/hosts; every
# mount is undone on exit, whatever happens.
# Usage: test_fresh.sh SOURCE_DIR
set -euo pipefail

src=$(cd "${1:?usage: test_fresh.sh SOURCE_DIR}" && pwd)
cache=${GPTOSS_FRESH_CACHE:-/var/cache/gptoss-fresh}
mirror=${GPTOSS_FRESH_MIRROR:-http://deb.debian.org/debian}
tarball=$cache/bookworm-minbase.tar

[[ $(id -u) -eq 0 ]] || { echo "SKIP: the fresh test needs root (debootstrap, chroot, mounts)"; exit 77; }
command -v debootstrap >/dev/null || { echo "SKIP: debootstrap is not installed (Debian: apt-get install debootstrap)"; exit 77; }

say() { printf '\n== fresh: %s (%ds)\n' "$*" "$SECONDS"; }
die() { echo "FAIL: $*" >&2; exit 1; }

# The README's commands: the first ```sh block after the heading.
readme_block() {
  awk -v heading="$1" '
    $0 == heading { found = 1; next }
    found && !inside && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }' "$src/README.md"
}
cmd1=$(readme_block "## Set up and run (one command)")
cmd2=$(readme_block "## Run the tests (one command)")
[[ -n "$cmd1" && -n "$cmd2" ]] || die "README.md has no \`\`\`sh block under one of its two '(one command)' headings"
echo "command 1: $cmd1"
echo "command 2: $cmd2"

work=$(mktemp -d /var/tmp/gptoss-fresh-XXXXXX)
root=$work/root
mounts=()
cleanup() {
  local status=$? pid m left
  # Processes still running in the root (a hung mpirun) would keep its mounts busy.
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [[ "$(readlink "/proc/$pid/root" 2>/dev/null)" == "$root" ]] && kill -9 "$pid" 2>/dev/null
  done
  for ((m = ${#mounts[@]} - 1; m >= 0; m--)); do
    umount "${mounts[m]}" 2>/dev/null || umount -l "${mounts[m]}" || true
  done
  left=$(awk -v r="$root" 'index($2, r) == 1' /proc/mounts)
  if [[ -n "$left" ]]; then
    echo "fresh: still mounted, $work left in place:"$'\n'"$left" >&2
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$cache" "$root"
if [[ -f "$tarball" && -z "$(find "$tarball" -mtime +30)" ]]; then
  say "unpacking the cached bare root $tarball"
  tar -xf "$tarball" -C "$root"
else
  say "debootstrap --variant=minbase bookworm (cached afterwards in $tarball)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
  tar -cf "$tarball.partial" -C "$root" . && mv "$tarball.partial" "$tarball"
fi
# debootstrap leaves the package lists it used; the debian:12 image (debuerreotype) empties them.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
mkdir -p "$root/var/lib/apt/lists/partial"

bind() { mount "$@"; mounts+=("${*: -1}"); }
bind -t proc proc "$root/proc"
bind -t sysfs sysfs "$root/sys"
bind --bind /dev "$root/dev"
bind -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
bind -t tmpfs -o mode=1777 shm "$root/dev/shm"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A container runtime writes /etc/hosts; debootstrap does not, and without one every Open MPI
# job of 3 or more ranks starts 5-10 s late (README.md, Troubleshooting).
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n' "$(hostname)" >"$root/etc/hosts"

# The checkout as git sees it (tracked files and untracked ones it does not ignore: no build/).
copy_checkout() {
  mkdir -p "$root$1"
  if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$src" ls-files -z --cached --others --exclude-standard |
      (cd "$src" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
      tar -C "$src" --null -T - -cf - | tar -C "$root$1" -xf -
  else
    tar -C "$src" --exclude='./build*' --exclude=./small-ckpt --exclude=./small.model -cf - . | tar -C "$root$1" -xf -
  fi
}
copy_checkout /root/gptoss-mpi
printf '%s\n' "$cmd1" >"$root/root/command1.sh"
printf '%s\n' "$cmd2" >"$root/root/command2.sh"
# Every step ends by the deadline, so a hang fails here, with the mounts undone, before ctest's
# timeout (which would kill this script without its clean-up).
deadline=${GPTOSS_FRESH_DEADLINE:-1500}
left() { echo $((deadline - SECONDS > 10 ? deadline - SECONDS : 10)); }
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
in_root() { timeout "$(left)" chroot "$root" /usr/bin/env -i PATH=$path HOME=/root TERM=dumb LANG=C.UTF-8 "$@"; }

say "command 1 as root, on the bare system"
start=$SECONDS
in_root bash -c 'cd /root/gptoss-mpi && bash -e /root/command1.sh' 2>&1 | tee "$work/command1-root.log" ||
  die "command 1 failed as root"
grep -q "tokens/s" "$work/command1-root.log" || die "command 1 (root) printed no tokens/s line"
grep -q "running as root, so mpirun gets --allow-run-as-root" "$work/command1-root.log" || die "command 1 (root) did not say it added mpirun's root flag"
echo "fresh: command 1 as root took $((SECONDS - start)) s"

say "command 2 as root"
start=$SECONDS
in_root bash -c 'cd /root/gptoss-mpi && bash -e /root/command2.sh' 2>&1 | tee "$work/command2-root.log" ||
  die "command 2 failed"
echo "fresh: command 2 took $((SECONDS - start)) s"

say "command 1 as a user with sudo (package lists emptied, hdf5-tools removed)"
in_root bash -ec 'export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends sudo >/dev/null
  useradd --create-home --shell /bin/bash newcomer
  echo "newcomer ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/newcomer
  apt-get remove -y -qq hdf5-tools >/dev/null
  rm -rf /var/lib/apt/lists/*'
copy_checkout /home/newcomer/gptoss-mpi
cp "$root/root/command1.sh" "$root/home/newcomer/command1.sh"
in_root chown -R newcomer:newcomer /home/newcomer
start=$SECONDS
timeout "$(left)" chroot --userspec=newcomer:newcomer "$root" /usr/bin/env -i PATH=$path HOME=/home/newcomer USER=newcomer TERM=dumb \
  LANG=C.UTF-8 bash -c 'cd ~/gptoss-mpi && bash -e ~/command1.sh' 2>&1 | tee "$work/command1-user.log" ||
  die "command 1 failed as a user with sudo"
grep -q "with sudo" "$work/command1-user.log" || die "command 1 (user) did not install through sudo"
grep -q "tokens/s" "$work/command1-user.log" || die "command 1 (user) printed no tokens/s line"
! grep -q "allow-run-as-root" "$work/command1-user.log" || die "command 1 (user) passed mpirun the root flag"
echo "fresh: command 1 as a user took $((SECONDS - start)) s"

say "passed"
