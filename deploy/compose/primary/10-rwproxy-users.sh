# shellcheck shell=bash
# mysql-0 (the primary), first start only (empty data dir). The MariaDB image's
# docker-entrypoint.sh sources this file after it has created root, with its helpers
# (docker_process_sql, docker_sql_escape_string_literal, mysql_note) in scope. Binary logging
# is on, so the statements below are in mysql-0's binlog: compose replicas replicate it from
# its beginning; Kubernetes replicas clone mysql-0's data instead.
#
# Passwords are files in $MYSQL_SECRETS_DIR: the compose secrets (/run/secrets, the default)
# or the Kubernetes Secret. deploy/kubernetes/mysql/initdb/ holds an identical copy (a test
# checks it), because kustomize cannot read files outside its own directory.

rwproxy_secret() {
	docker_sql_escape_string_literal "$(< "${MYSQL_SECRETS_DIR:-/run/secrets}/$1")"
}

mysql_note "rwproxy: creating database app and users app, monitor, replication"
docker_process_sql --binary-mode <<-EOSQL
	CREATE DATABASE IF NOT EXISTS app;
	CREATE USER 'app'@'%' IDENTIFIED BY '$(rwproxy_secret app-password)';
	GRANT ALL ON app.* TO 'app'@'%';
	-- Health checks: @@read_only and the GTID positions need no privilege,
	-- SHOW SLAVE STATUS needs SLAVE MONITOR, binlog positions BINLOG MONITOR.
	CREATE USER 'monitor'@'%' IDENTIFIED BY '$(rwproxy_secret monitor-password)';
	GRANT BINLOG MONITOR, SLAVE MONITOR, PROCESS ON *.* TO 'monitor'@'%';
	CREATE USER 'replication'@'%' IDENTIFIED BY '$(rwproxy_secret replication-password)';
	GRANT REPLICATION SLAVE ON *.* TO 'replication'@'%';
EOSQL
