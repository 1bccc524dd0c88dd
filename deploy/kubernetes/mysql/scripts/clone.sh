#!/bin/bash
# Init container 2 of 2: give an empty replica a copy of the data. Pod 0 initialises itself
# (the image's entrypoint, with initdb/); a pod with data already has it. Otherwise stream a
# mariadb-backup from the previous pod's `mariabackup` container (port 3307), falling back to
# mysql-0, prepare it, and note the GTID position it was taken at for replicate-and-serve.sh.
set -euo pipefail

datadir=${DATADIR:-/var/lib/mysql}
service=${SERVICE:-mysql-h}
clone_port=${CLONE_PORT:-3307}

[[ ${HOSTNAME} =~ ^(.+)-([0-9]+)$ ]] || { echo "no ordinal in hostname ${HOSTNAME}" >&2; exit 1; }
statefulset=${BASH_REMATCH[1]}
ordinal=${BASH_REMATCH[2]}

if [[ -d ${datadir}/mysql ]]; then
	echo "data present, nothing to clone"
	exit 0
fi
if ((ordinal == 0)); then
	echo "pod 0 initialises its own data"
	exit 0
fi

# mysql/ is moved into place last, so without it any leftover is an interrupted clone.
find "${datadir}" -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +
staging=${datadir}/.clone

# The GTID of the backup: a replica's backup (--slave-info) records its gtid_slave_pos;
# mysql-0's records the binlog position "file offset gtid". 10.11 names the files
# xtrabackup_*, 11.x mariadb_backup_*.
backup_gtid() {
	local file
	for file in xtrabackup_slave_info mariadb_backup_slave_info; do
		if [[ -s ${staging}/${file} ]]; then
			sed -n "s/.*gtid_slave_pos *= *'\([^']*\)'.*/\1/p" "${staging}/${file}"
			return
		fi
	done
	for file in xtrabackup_binlog_info mariadb_backup_binlog_info; do
		if [[ -s ${staging}/${file} ]]; then
			awk '{ print $3 }' "${staging}/${file}"
			return
		fi
	done
}

clone_from() {
	local source=$1
	rm -rf "${staging}" && mkdir "${staging}"
	echo "cloning from ${source}:${clone_port}"
	socat -u "TCP:${source}:${clone_port},connect-timeout=10" STDOUT \
		| mbstream -x -C "${staging}" || return 1
	mariadb-backup --prepare --target-dir="${staging}" || return 1
}

sources=("${statefulset}-$((ordinal - 1)).${service}")
((ordinal > 1)) && sources+=("${statefulset}-0.${service}")
for source in "${sources[@]}"; do
	if clone_from "${source}"; then
		gtid=$(backup_gtid)
		if [[ -n ${gtid} ]]; then
			echo "${gtid}" > "${staging}/rwproxy-replicate-from.gtid"
			find "${staging}" -mindepth 1 -maxdepth 1 ! -name mysql -exec mv -t "${datadir}" {} +
			mv "${staging}/mysql" "${datadir}/mysql"
			rmdir "${staging}"
			echo "cloned from ${source} at GTID ${gtid}"
			exit 0
		fi
		echo "the backup from ${source} has no GTID position" >&2
	fi
	echo "cloning from ${source} failed" >&2
done
exit 1
