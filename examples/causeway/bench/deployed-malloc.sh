# Sourced by the benchmarks that start `causeway serve` (soak.sh, scale.sh):
# sets `server_env` to the command prefix that gives the server glibc's
# allocator settings as deploy/systemd/causeway.service (and the Debian image)
# deploy them, or to nothing with MALLOC=glibc (glibc's defaults: an arena per
# thread, an mmap threshold that rises to the largest block freed).
# shellcheck shell=bash
server_env=()
if [ "${MALLOC:-deployed}" = deployed ]; then
  tunables=$(sed -nE 's/^Environment=GLIBC_TUNABLES=//p' deploy/systemd/causeway.service)
  if [ -n "$tunables" ]; then server_env=(env "GLIBC_TUNABLES=$tunables"); fi
fi
