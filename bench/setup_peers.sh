#!/usr/bin/env bash
# Create the benchmark's own environment (default bench/.venv-peers, or $PEERS_VENV): torch, torchvision, the
# peer counters at pinned versions, and flopcalc (editable). The project's .venv never sees the peers.
# thop (Lyken17) and ultralytics-thop both install the top-level module `thop`, so each goes into its own
# --target directory inside the venv; bench/tools.py puts the right one on sys.path of the worker that uses it.
# A peer that cannot be installed is listed in $venv/missing.txt and skipped by the bench.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
venv=${PEERS_VENV:-$here/.venv-peers}
pip=("$venv/bin/python" -m pip install -q)

test -x "$venv/bin/python" || python3 -m venv "$venv"
"${pip[@]}" torch==2.14.1 torchvision==0.29.1
"${pip[@]}" -e "$repo"
: >"$venv/missing.txt"
for spec in ptflops==0.7.5 fvcore==0.1.5.post20221221 torchinfo==1.8.0; do
    "${pip[@]}" "$spec" || echo "${spec%%==*}" >>"$venv/missing.txt"
done
# DeepSpeed's profiler and calflops (which imports transformers without declaring it) count the reference
# numbers of tests/data/peer_counts.json (bench/peer_counts.py); DS_BUILD_OPS=0 installs no CUDA kernels.
DS_BUILD_OPS=0 "${pip[@]}" deepspeed==0.19.8 || echo deepspeed >>"$venv/missing.txt"
"${pip[@]}" calflops==0.3.2 transformers accelerate || echo calflops >>"$venv/missing.txt"
for spec in thop==0.1.1.post2209072238:thop-lyken17 ultralytics-thop==2.2.3:thop-ultralytics; do
    rm -rf "${venv:?}/${spec#*:}"
    "${pip[@]}" --no-deps --target "$venv/${spec#*:}" "${spec%%:*}" || echo "${spec%%==*}" >>"$venv/missing.txt"
done
touch "$venv/.installed"
