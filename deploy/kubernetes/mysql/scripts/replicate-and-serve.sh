#!/bin/bash
# The `mariabackup` container, next to mariadbd in every pod:
# 1. on a freshly cloned replica (clone.sh left rwproxy-replicate-from.gtid), point it at
#    mysql-0 from the backup's GTID position and start replicating, once;
# 2. then serve a streamed mariadb-backup of this pod to whoever connects to port 3307: the
#    next pod's clone.sh. The NetworkPolicy admits only the StatefulSet's own pods.
set -euo pipefail

datadir=${DATADIR:-/var/lib/mysql}
secrets=${MYSQL_SECRETS_DIR:-/etc/mysql-secrets}
socket=${SOCKET:-/run/mysqld/mysqld.sock}
primary=${PRIMARY_HOST:-mysql-0.mysql-h}
clone_port=${CLONE_PORT:-3307}
clone_bind=${CLONE_BIND:-0.0.0.0}
gtid_file=${datadir}/rwproxy-replicate-from.gtid

# root over the socket shared through an emptyDir; MYSQL_PWD keeps it off the command line.
MYSQL_PWD=$(< "${secrets}/root-password")
export MYSQL_PWD
sql() {
	mariadb --no-defaults --protocol=socket --socket="${socket}" --user=root "$@"
}

until sql --execute='SELECT 1' >/dev/null 2>&1; do
	echo "waiting for mariadbd"
	sleep 2
done

if [[ -f ${gtid_file} ]]; then
	if [[ -z $(sql --batch --skip-column-names --execute='SHOW SLAVE STATUS') ]]; then
		gtid=$(< "${gtid_file}")
		password=$(< "${secrets}/replication-password")
		password=${password//\\/\\\\}
		password=${password//\'/\\\'}
		echo "replicating from ${primary} from GTID ${gtid}"
		sql <<-EOSQL
			SET GLOBAL gtid_slave_pos = '${gtid}';
			CHANGE MASTER TO
			  MASTER_HOST='${primary}',
			  MASTER_PORT=3306,
			  MASTER_USER='replication',
			  MASTER_PASSWORD='${password}',
			  MASTER_CONNECT_RETRY=5,
			  MASTER_USE_GTID=slave_pos;
			START SLAVE;
		EOSQL
	fi
	mv "${gtid_file}" "${gtid_file}.applied"
fi

echo "serving clones on port ${clone_port}"
exec socat "TCP-LISTEN:${clone_port},bind=${clone_bind},reuseaddr,fork,max-children=1" \
	"EXEC:mariadb-backup --backup --stream=xbstream --slave-info --user=root --socket=${socket} --target-dir=/tmp"
