# `make lint-deploy`: offline validation of the deployment files (Dockerfile, docker-compose.yml,
# deploy/kubernetes/, the MariaDB scripts), with the tools pinned in deploy/requirements-lint.txt.
# See deploy/validate.py for what each check runs.
#
# Included from the Makefile (at its end, after BIN and STAMP are defined):
#     include deploy/lint.mk
# Standalone, with an existing .venv:
#     make -f deploy/lint.mk lint-deploy
#
# Everything comes from PyPI into $(BIN)'s virtual environment; no system package is needed
# beyond the Python venv that the Makefile's system-deps target already installs.

BIN ?= .venv/bin
DEPLOY_LINT_STAMP := $(patsubst %/bin,%,$(BIN))/.deploy-lint-installed

.PHONY: lint-deploy

lint-deploy: $(DEPLOY_LINT_STAMP)
	$(BIN)/python deploy/validate.py

# $(STAMP) is the Makefile's "venv is installed" stamp; empty when this file runs standalone.
$(DEPLOY_LINT_STAMP): deploy/requirements-lint.txt $(STAMP)
	@[ -x $(BIN)/python ] || { echo "lint-deploy: no virtual environment at $(BIN): run 'make venv'" >&2; exit 1; }
	$(BIN)/python -m pip install -q -r deploy/requirements-lint.txt
	touch $@
