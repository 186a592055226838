#!/usr/bin/env bash
# GPAW labelling of exported jobs on a host without GPAW (a lent GPU machine's CPU cores), as root:
# unpack the root made by scripts/pack_gpaw_root.py, chroot into it, run scripts/run_jobs.sh there
# for SECONDS_LEFT seconds, stop, and pack the outputs for `python -m dev_scripts.builtin ingest-jobs`.
#
#   OUT=out bash scripts/label_on_device.sh PACK.tar.xz JOBS_DIR [WORKERS] [SECONDS_LEFT]
#
# Background use: start it with setsid and run other work (e.g. ONLY=rates scripts/gpu_check.sh)
# meanwhile; it stops only its own process group's workers.
set -u
pack=${1:?usage: label_on_device.sh PACK.tar.xz JOBS_DIR [WORKERS] [SECONDS_LEFT]}; jobs=${2:?}
workers=${3:-$(nproc)}; left=${4:-480}; OUT=${OUT:?set OUT}
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
stamp() { echo "[label +$(el)s] $*"; }
R=$(mktemp -d /tmp/gpawroot.XXXX)
xz -dc -T0 "$pack" | tar -xf - -C "$R" || { stamp "cannot unpack $pack"; exit 2; }
mkdir -p "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$R/jobs"
mount --bind /dev "$R/dev" || mknod -m 666 "$R/dev/null" c 1 3
mount --bind /proc "$R/proc" || true
mount --bind /sys "$R/sys" || true
cp "$(dirname "$0")/../dosmatgen/dos/gpaw_worker.py" "$R/" && cp "$jobs"/*.json "$R/jobs/"
chroot_bin=$(PATH=$PATH:/usr/sbin:/sbin command -v chroot) || { stamp "no chroot here"; exit 2; }
py=$R.py  # the interpreter run_jobs.sh calls: paths under $R are seen from inside the chroot
cat > "$py" <<EOS
#!/usr/bin/env bash
args=(); for a in "\$@"; do case "\$a" in */gpaw_worker.py) args+=(/gpaw_worker.py);; $R/*) args+=("\${a#$R}");; *) args+=("\$a");; esac; done
exec env -i PATH=/usr/bin:/bin HOME=/tmp OMPI_MCA_ess_singleton_isolated=1 OMPI_MCA_mca_base_component_show_load_errors=0 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $chroot_bin $R /usr/bin/python3.11 "\${args[@]}"
EOS
chmod +x "$py"
stamp "chroot: $("$py" -c 'import gpaw; print("gpaw", gpaw.__version__)' 2>&1 | tail -1)"
stamp "$(ls "$R"/jobs/*.job.json | wc -l) jobs on $workers workers for ${left}s"
PYTHON=$py setsid bash "$(dirname "$0")/run_jobs.sh" "$R/jobs" "$workers" "$left" > "$OUT/label.log" 2>&1 &
lpid=$!
while [ "$(el)" -lt "$left" ] && kill -0 $lpid 2>/dev/null; do sleep 5; done
kill -TERM -- -$lpid 2>/dev/null; sleep 2; kill -KILL -- -$lpid 2>/dev/null
(cd "$R/jobs" && tar -cf "$OUT/offsite_jobs.tar" $(ls *.out.npz *.log 2>/dev/null))
stamp "$(cd "$R/jobs" && ls *.out.npz 2>/dev/null | wc -l) outputs -> $OUT/offsite_jobs.tar"
umount "$R/dev" "$R/proc" "$R/sys" 2>/dev/null || true
