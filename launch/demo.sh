#!/usr/bin/env bash
# The README's first command: on Debian 12 / Ubuntu, from a bare system to text on the screen.
# Installs the build dependencies (only those missing; the package lists are updated first, with
# sudo when not root), builds into build/, writes a small random GPT-OSS (small-ckpt/, converted
# to small.model/) and generates from it on 8 ranks under mpirun. Run it from anywhere; it works
# in the checkout it belongs to. Options: --ranks N (1, 2, 4 or 8; default 8), --no-install.
set -euo pipefail
cd "$(dirname "$0")/.."

ranks=8
install=1
while (($#)); do
  case $1 in
    --ranks) ranks=${2:?--ranks needs a number}; shift 2 ;;
    --no-install) install=0; shift ;;
    -h | --help) sed -n '2,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option '$1' (--ranks N, --no-install)" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }

packages=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-dev
          libhdf5-dev hdf5-tools libcmocka-dev libjansson-dev libpcre2-dev
          libmicrohttpd-dev  # gptoss serve's HTTP server
          nodejs curl)       # the serve tests' HTTP clients (tests/serve)
if ((install)); then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    as_root=()
    if [[ $(id -u) -ne 0 ]]; then
      command -v sudo >/dev/null || { echo "demo.sh: installing ${missing[*]} needs root: run as root or install sudo" >&2; exit 1; }
      as_root=(sudo)
    fi
    step "installing ${missing[*]} (apt-get update first${as_root:+, with sudo})"
    "${as_root[@]}" apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

# A root without /etc/hosts (a debootstrap chroot; container runtimes write one) makes every
# Open MPI job of 3 or more ranks wait 5-10 s at start-up (README.md, Troubleshooting).
[[ -e /etc/hosts ]] || echo "demo.sh: warning: there is no /etc/hosts, so each mpirun below starts ~10 s late; 'echo 127.0.0.1 localhost >>/etc/hosts' as root fixes it" >&2

step "building (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
build/gptoss --version

step "a small random model: synth (small-ckpt/), convert (small.model/)"
build/gptoss synth --preset small --out small-ckpt
build/gptoss convert --checkpoint small-ckpt --out small.model --force --quiet

# Open MPI refuses to start as root unless told; containers and CI run as root.
mpirun_args=(--oversubscribe -np "$ranks")
if [[ $(id -u) -eq 0 ]]; then
  echo "demo.sh: running as root, so mpirun gets --allow-run-as-root"
  mpirun_args+=(--allow-run-as-root)
fi
prompt="The capital of France is"
generate=(build/gptoss generate --model small.model --raw --prompt "$prompt" --max-tokens 40 --seed 3)
step "mpirun ${mpirun_args[*]} ${generate[*]:0:6} '$prompt' ${generate[*]:7}"
echo "The weights are random, so the continuation below is noise: it shows the $ranks ranks ran the"
echo "model and decoded real o200k tokens, nothing more. (Real weights: README.md, 'Running the real models'.)"
printf -- '-- prompt: %s\n-- continuation:\n' "$prompt"
mpirun "${mpirun_args[@]}" "${generate[@]}"
