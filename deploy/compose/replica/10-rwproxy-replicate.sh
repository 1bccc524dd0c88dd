# shellcheck shell=bash
# mysql-1, mysql-2 (replicas), first start only: sourced by the MariaDB image's
# docker-entrypoint.sh after it has created root (not binary-logged, so nothing here clashes
# with what arrives from mysql-0). The replica starts with an empty gtid_slave_pos, so it
# replicates mysql-0's binlog from the beginning, which brings the app database and users.
# The server runs with read_only=1 (docker-compose.yml); the replication thread may still write.

rwproxy_secret() {
	docker_sql_escape_string_literal "$(< "${MYSQL_SECRETS_DIR:-/run/secrets}/$1")"
}

mysql_note "rwproxy: replicating from mysql-0.mysql-h.default.svc.cluster.local"
docker_process_sql --binary-mode <<-EOSQL
	CHANGE MASTER TO
	  MASTER_HOST='mysql-0.mysql-h.default.svc.cluster.local',
	  MASTER_PORT=3306,
	  MASTER_USER='replication',
	  MASTER_PASSWORD='$(rwproxy_secret replication-password)',
	  MASTER_CONNECT_RETRY=5,
	  MASTER_USE_GTID=slave_pos;
	START SLAVE;
EOSQL
