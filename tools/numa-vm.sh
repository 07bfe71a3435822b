#!/usr/bin/env bash
# numa-vm.sh: runs the NUMA placement probe in a multi-node Linux VM under qemu.
#
# The host has one NUMA node, so placement can only be proven on a kernel that has
# several: qemu (TCG) boots Debian's kernel with the NUMA layout of the chosen case
# and an initramfs holding busybox, the probe, the preloaded allocator and every
# shared library they need. /init runs the probe and prints its exit status on the
# serial console; qemu exits on the reboot. Missing packages (qemu, busybox, cpio,
# xz) are installed by tools/install-deps.sh (group numa-vm); the kernel is fetched with apt-get download and
# its uncompressed vmlinux cached (see --cache), shared safely by parallel runs.
#
# usage: tools/numa-vm.sh --case NAME --probe BIN [options]
#   --case NAME       2node | 4node | 4node-1pkg | cpuless | memless
#   --probe BIN       the numa_probe binary (required)
#   --preload LIB     allocator to LD_PRELOAD in the VM (default: none, glibc)
#   --assert          pass --assert to the probe (fail below 95% local pages)
#   --probe-arg ARG   another argument for the probe, e.g. --main-hop (repeatable)
#   --env K=V         extra environment for the probe, e.g. BRISK_NUMA=auto (repeatable)
#   --no-hwloc        leave libhwloc out of the image: brisk's dlopen of it fails
#                     there, as on a system without libhwloc15
#   --expect ERE      the probe's output must have a line matching ERE, e.g. the
#                     topology source BRISK_VERBOSE=1 names (repeatable)
#   --numa-balancing  leave the kernel's automatic NUMA balancing on (default: off,
#                     so that the pages stay where the allocator put them)
#   --thp MODE        transparent huge pages: always | madvise | never (default: the
#                     kernel's, always on Debian; a huge page is placed whole by
#                     its first toucher, so THP is part of what is measured)
#   --init-cmd CMD    a shell command /init runs before the probe (repeatable),
#                     e.g. 'echo 0 >/proc/sys/kernel/numa_balancing'
#   --timeout S       kill qemu after S seconds (default 100)
#   --cache DIR       kernel cache (default ${BRISK_VM_CACHE:-$HOME/.cache/brisk-numa-vm})
#   --keep            keep the work directory (initramfs, serial log) and print it
# BRISK_VM_KERNEL=/path/vmlinux boots that kernel instead of Debian's.
# exit: the probe's status (0 pass, 1 fail, 2 probe error), 77 when the VM cannot
# run here (no qemu, no kernel, no boot), 1 when the probe started but never ended.
set -euo pipefail

me=numa-vm
say() { printf '%s: %s\n' "$me" "$*" >&2; }
skip() { say "SKIP: $*"; exit 77; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

case_name='' probe='' preload='' assert=0 timeout=100 keep=0 balancing=0 thp=
cache=${BRISK_VM_CACHE:-${HOME:-/root}/.cache/brisk-numa-vm}
envs=() init_cmds=() probe_extra=() expects=() hwloc=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --case) case_name=$2; shift 2 ;;
    --probe) probe=$2; shift 2 ;;
    --preload) preload=$2; shift 2 ;;
    --assert) assert=1; shift ;;
    --probe-arg) [[ $2 =~ ^[-a-z0-9=]+$ ]] || { say "--probe-arg: letters, digits, - and = only"; exit 2; }
                 probe_extra+=("$2"); shift 2 ;;
    --env) [[ $2 == *=* ]] || { say "--env wants K=V, got '$2'"; exit 2; }
           envs+=("$2"); shift 2 ;;
    --numa-balancing) balancing=1; shift ;;
    --no-hwloc) hwloc=0; shift ;;
    --expect) expects+=("$2"); shift 2 ;;
    --thp) case $2 in always|madvise|never) thp=$2 ;; *) say "--thp: always, madvise or never"; exit 2 ;; esac
           shift 2 ;;
    --init-cmd) init_cmds+=("$2"); shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) say "unknown option $1"; usage >&2; exit 2 ;;
  esac
done
[[ -n $probe && -x $probe ]] || { say "--probe BIN is required and must be executable"; exit 2; }
[[ -z $preload || -f $preload ]] || { say "--preload $preload does not exist"; exit 2; }

# ------------------------------------------------------------------------------
# The cases: CPUs, memory and NUMA arguments. Nodes get 256 MiB each (the guest
# needs ~100 MiB in all); distances make "nearest node" unambiguous.
# ------------------------------------------------------------------------------
NODE_MB=256
qnuma=()
mem_node() { qnuma+=(-object "memory-backend-ram,id=m$1,size=${NODE_MB}M"
                     -numa "node,nodeid=$1,memdev=m$1"); }
dist() { qnuma+=(-numa "dist,src=$1,dst=$2,val=$3"); }
case $case_name in
  2node)
    # Two sockets, one CPU and 256 MiB each.
    smp=2,sockets=2,cores=1,threads=1 mem_nodes=2
    mem_node 0; mem_node 1
    qnuma+=(-numa cpu,node-id=0,socket-id=0 -numa cpu,node-id=1,socket-id=1)
    dist 0 1 21 ;;
  4node)
    # Four sockets in two pairs: 0-1 and 2-3 near each other.
    smp=4,sockets=4,cores=1,threads=1 mem_nodes=4
    for n in 0 1 2 3; do mem_node $n; qnuma+=(-numa "cpu,node-id=$n,socket-id=$n"); done
    dist 0 1 16; dist 2 3 16; dist 0 2 32; dist 0 3 32; dist 1 2 32; dist 1 3 32 ;;
  4node-1pkg)
    # Sub-NUMA clustering: one package, each core its own node.
    smp=4,sockets=1,cores=4,threads=1 mem_nodes=4
    for n in 0 1 2 3; do mem_node $n; qnuma+=(-numa "cpu,node-id=$n,socket-id=0,core-id=$n"); done
    dist 0 1 11; dist 2 3 11; dist 0 2 12; dist 0 3 12; dist 1 2 12; dist 1 3 12 ;;
  cpuless)
    # qemu node 1 has memory and no CPU (Linux numbers it after the CPU nodes).
    smp=2,sockets=2,cores=1,threads=1 mem_nodes=3
    mem_node 0; mem_node 1; mem_node 2
    qnuma+=(-numa cpu,node-id=0,socket-id=0 -numa cpu,node-id=2,socket-id=1)
    dist 0 1 17; dist 0 2 21; dist 1 2 17 ;;
  memless)
    # Node 2 has a CPU and no memory; node 1 is nearer to it than node 0.
    smp=3,sockets=3,cores=1,threads=1 mem_nodes=2
    mem_node 0; mem_node 1; qnuma+=(-numa node,nodeid=2)
    for n in 0 1 2; do qnuma+=(-numa "cpu,node-id=$n,socket-id=$n"); done
    dist 0 1 20; dist 0 2 25; dist 1 2 15 ;;
  '') say "--case is required"; usage >&2; exit 2 ;;
  *) say "unknown case '$case_name'"; exit 2 ;;
esac

# ------------------------------------------------------------------------------
# Packages and the kernel
# ------------------------------------------------------------------------------
mkdir -p "$cache" || skip "cannot create the cache directory $cache"
command -v dpkg-query >/dev/null || skip "not a Debian system: install qemu-system-x86, busybox-static, cpio, xz-utils by hand"
. "$(dirname "$0")/install-deps.sh"
brisk_need numa-vm || skip "cannot install the packages of group numa-vm (above)"
qemu=$(command -v qemu-system-x86_64) || skip "no qemu-system-x86_64"
busybox=/bin/busybox
[[ -x $busybox ]] && "$busybox" --list >/dev/null 2>&1 || skip "no static busybox at $busybox"

# Debian's current kernel (what linux-image-amd64 depends on), as an uncompressed
# ELF vmlinux: qemu boots it through its PVH note, skipping ~5 s of decompression
# under TCG. The XZ stream inside vmlinuz starts at FD 37 7A 58 5A 00.
fetch_kernel() {
  local pkg dir deb off vmlinuz
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ && !n++ {print $2}')
  if [[ -z $pkg ]]; then
    [[ $(id -u) == 0 ]] && apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ && !n++ {print $2}')
  fi
  [[ -n $pkg ]] || { say "apt-cache knows no linux-image-amd64"; return 1; }
  dir=$cache/$pkg
  if [[ -s $dir/vmlinux ]]; then echo "$dir/vmlinux"; return 0; fi
  say "fetching $pkg into $dir"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  (cd "$dir.tmp" && apt-get download "$pkg" >/dev/null 2>&1) || { say "apt-get download $pkg failed"; return 1; }
  deb=$(ls "$dir.tmp"/*.deb)
  # Only /boot: the modules are not needed and are ten times larger.
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir.tmp" --wildcards './boot/vmlinuz-*'
  vmlinuz=$(ls "$dir.tmp"/boot/vmlinuz-*)
  off=$(LC_ALL=C grep -m1 -obUaP '\xFD7zXZ\x00' "$vmlinuz" | awk -F: 'NR == 1 {print $1}')
  [[ -n $off ]] || { say "no XZ payload in $vmlinuz"; return 1; }
  tail -c +$((off + 1)) "$vmlinuz" | xz -dc --single-stream >"$dir.tmp/vmlinux"
  [[ $(head -c 4 "$dir.tmp/vmlinux" | od -An -c | tr -d ' ') == 177ELF ]] \
    || { say "the payload of $vmlinuz is not an ELF vmlinux"; return 1; }
  rm -rf "$dir" && mkdir -p "$dir" && mv "$dir.tmp/vmlinux" "$dir/vmlinux" && rm -rf "$dir.tmp"
  echo "$dir/vmlinux"
}

if [[ -n ${BRISK_VM_KERNEL:-} ]]; then
  kernel=$BRISK_VM_KERNEL
  [[ -f $kernel ]] || skip "BRISK_VM_KERNEL=$kernel does not exist"
else
  # Parallel runs share one download: the first fetches, the others wait.
  exec 8>"$cache/kernel.lock"
  flock 8
  kernel=$(fetch_kernel) || skip "no kernel to boot (see above)"
  flock -u 8
fi

# ------------------------------------------------------------------------------
# The initramfs
# ------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/numa-vm.XXXXXX")
if [[ $keep == 0 ]]; then trap 'rm -rf "$work"' EXIT; fi
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,preload}
cp "$busybox" "$root/bin/busybox"
for applet in sh env mount cat echo reboot; do ln -s busybox "$root/bin/$applet"; done
cp "$probe" "$root/bin/numa_probe"

# Every library ldd lists (the dynamic loader included), at the same path, so the
# loader's default search finds them; the preloaded library's own dependencies
# (libstdc++) come the same way.
copy_libs() {
  local lib
  while read -r lib; do
    [[ -e $root$lib ]] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done < <(ldd "$1" 2>/dev/null | grep -oE '/[^ ]+' | sort -u || true)
}
copy_libs "$probe"
preload_env=''
if [[ -n $preload ]]; then
  cp -L "$preload" "$root/preload/$(basename "$preload")"
  copy_libs "$preload"
  preload_env="LD_PRELOAD=/preload/$(basename "$preload")"
fi
# brisk dlopens hwloc when it finds several nodes, so ldd does not list it.
hwloc_lib=$(ldconfig -p | awk '/libhwloc\.so\.15 .*x86-64/ && !n++ {print $NF}')  # no early exit: SIGPIPE under pipefail
if [[ $hwloc == 0 ]]; then
  if [[ -n $(find "$root" -name 'libhwloc*' -print -quit) ]]; then
    say "--no-hwloc: the probe or the preloaded library links libhwloc itself"
    exit 2
  fi
elif [[ -n $hwloc_lib ]]; then
  mkdir -p "$root$(dirname "$hwloc_lib")"
  cp -L "$hwloc_lib" "$root$hwloc_lib"
  copy_libs "$hwloc_lib"
else
  say "warning: libhwloc.so.15 not found; brisk will run without NUMA pools in the VM"
fi
[[ -e $root/lib64/ld-linux-x86-64.so.2 ]] || say "warning: no dynamic loader copied (static probe?)"

probe_args=''
[[ $assert == 1 ]] && probe_args=--assert
for a in ${probe_extra[@]+"${probe_extra[@]}"}; do probe_args+=" $a"; done
{
  echo '#!/bin/sh'
  echo 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev'
  echo 'exec >/dev/console 2>&1 </dev/console'
  echo 'read up _ </proc/uptime'
  echo 'echo "BRISK_VM_PROBE_START uptime=$up"'
  # Automatic NUMA balancing would migrate misplaced pages towards their users
  # after the fact: the probe measures where the allocator put them.
  [[ $balancing == 1 ]] || echo 'echo 0 >/proc/sys/kernel/numa_balancing'
  [[ -z $thp ]] || echo "echo $thp >/sys/kernel/mm/transparent_hugepage/enabled"
  for cmd in ${init_cmds[@]+"${init_cmds[@]}"}; do echo "$cmd"; done
  printf 'env'
  for kv in ${preload_env:+"$preload_env"} ${envs[@]+"${envs[@]}"}; do printf ' %q' "$kv"; done
  echo " /bin/numa_probe $probe_args"
  echo 'rc=$?'
  echo 'read up _ </proc/uptime'
  echo 'echo "BRISK_VM_EXIT=$rc uptime=$up"'
  echo 'reboot -f'
} >"$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet >"$work/initrd.cpio")

# ------------------------------------------------------------------------------
# Boot
# ------------------------------------------------------------------------------
log=$work/serial.log
kargs='console=ttyS0 loglevel=1 panic=-1 rdinit=/init mitigations=off nokaslr'
kargs+=' cryptomgr.notests rodata=off'
kargs+=' initcall_blacklist=init_kprobe_trace,load_system_certificate_list,crypto_kdf108_init'
say "case=$case_name kernel=$kernel preload=${preload:-none} assert=$assert hwloc=$hwloc"
start=$(date +%s%N)
qrc=0
timeout -k 5 "$timeout" "$qemu" -M q35 -accel tcg -cpu max -nodefaults -display none \
  -no-reboot -smp "$smp" -m $((NODE_MB * mem_nodes))M "${qnuma[@]}" \
  -serial "file:$log" -kernel "$kernel" -initrd "$work/initrd.cpio" -append "$kargs" \
  >"$work/qemu.out" 2>&1 || qrc=$?
wall_ms=$((($(date +%s%N) - start) / 1000000))
tr -d '\r' <"$log" >"$work/serial.txt" 2>/dev/null || : >"$work/serial.txt"
# The probe's own lines, without the markers and kernel messages.
sed -n '/^BRISK_VM_PROBE_START/,/^BRISK_VM_EXIT=/p' "$work/serial.txt" | sed '1d;$d' \
  | grep -v '^\[ *[0-9.]*\]' >"$work/probe.txt" || true
cat "$work/probe.txt"
[[ $keep == 1 ]] && say "work directory: $work"

start_line=$(grep -m1 '^BRISK_VM_PROBE_START' "$work/serial.txt" || true)
exit_line=$(grep -m1 '^BRISK_VM_EXIT=' "$work/serial.txt" || true)
if [[ -z $start_line ]]; then
  say "qemu exited with $qrc; last console lines:"
  tail -n 15 "$work/serial.txt" >&2 || true
  cat "$work/qemu.out" >&2 || true
  if [[ $qrc == 124 || $qrc == 137 ]]; then skip "the VM did not boot within ${timeout}s"; fi
  skip "the VM did not reach /init (qemu status $qrc)"
fi
if [[ -z $exit_line ]]; then
  tail -n 15 "$work/serial.txt" >&2 || true
  say "FAIL: the probe started but did not finish (qemu status $qrc, timeout ${timeout}s)"
  exit 1
fi
rc=${exit_line#BRISK_VM_EXIT=}; rc=${rc%% *}
if [[ -n $preload ]] && ! grep -q "^malloc_from=/preload/$(basename "$preload")\$" "$work/serial.txt"; then
  grep -E '^malloc_from=|cannot be preloaded' "$work/serial.txt" >&2 || true
  say "FAIL: malloc in the VM did not come from $(basename "$preload")"
  exit 1
fi
for re in ${expects[@]+"${expects[@]}"}; do
  grep -Eq -- "$re" "$work/probe.txt" || { say "FAIL: no line of the probe's output matches /$re/"; exit 1; }
done
boot=${start_line#*uptime=}; done_at=${exit_line#*uptime=}
say "case=$case_name probe_exit=$rc boot_to_probe=${boot}s probe_done=${done_at}s qemu_wall=${wall_ms}ms"
exit "$rc"
