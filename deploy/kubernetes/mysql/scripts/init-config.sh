#!/bin/bash
# Init container 1 of 2: the server's configuration for this pod, into the conf.d emptyDir.
# server_id is 100 + the pod ordinal (never 0, unique in the StatefulSet); pod 0 is the
# primary, every other pod a read-only replica.
set -euo pipefail

conf_dir=${CONF_DIR:-/mnt/conf.d}
config_dir=${CONFIG_DIR:-/mnt/config}

[[ ${HOSTNAME} =~ -([0-9]+)$ ]] || { echo "no ordinal in hostname ${HOSTNAME}" >&2; exit 1; }
ordinal=${BASH_REMATCH[1]}

printf '[mariadb]\nserver_id = %d\n' $((100 + ordinal)) > "${conf_dir}/server-id.cnf"
if ((ordinal == 0)); then
	cp "${config_dir}/primary.cnf" "${conf_dir}/"
else
	cp "${config_dir}/replica.cnf" "${conf_dir}/"
fi
echo "pod ${ordinal}: server_id $((100 + ordinal)), $( ((ordinal == 0)) && echo primary || echo replica)"
