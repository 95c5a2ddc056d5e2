# Sourced by the tools/ scripts: the environment MeshLM runs at full speed in.
# - Open MPI refuses to run as root without these two, and needs oversubscription for more
#   ranks than cores (tests start up to 8 ranks on 2 cores).
# - OPENBLAS_CORETYPE: some machines preset it (e.g. Haswell), which forces AVX2 kernels at half
#   speed on AVX-512 CPUs; unset, OpenBLAS picks the best kernels for the CPU it runs on.
# - One OpenBLAS thread per rank unless the caller says otherwise (one rank per core).
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    echo "env: unsetting OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE so OpenBLAS uses this CPU's own kernels" >&2
    unset OPENBLAS_CORETYPE
fi
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
for candidate in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
    if ! command -v swift >/dev/null 2>&1 && [ -x "$candidate/swift" ]; then export PATH="$candidate:$PATH"; fi
done
