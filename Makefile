# The two commands the README opens with:
#   make demo   - a local simulated server, provisioned by site.yml over SSH
#   make test   - lint, unit tests, and Molecule's full sequence
# Both install what they need (run as root on Debian 12/13).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR := 0
export RPA_TESTBED_DIR := $(CURDIR)/.testbed
# The demo inventory's own vault (tools/demo_vault.py); Molecule has its own
# (.cache/molecule, made afresh by `make molecule`), so `make test` never
# changes the demo's. Production runs pass their own --vault-id.
DEMO_VAULT_PASS := $(CURDIR)/inventory/demo/.vault-pass
DEMO_VAULT_ID := demo@$(DEMO_VAULT_PASS)
MOLECULE_VAULT_ID := molecule@$(CURDIR)/.cache/molecule/vault-pass
export ANSIBLE_VAULT_IDENTITY_LIST := $(DEMO_VAULT_ID)
TESTBED := python3 $(CURDIR)/testbed/testbed.py
REPORTS := $(CURDIR)/.cache/reports
# Each phase of `make test` is timed into $(RPA_PHASES); test_summary.py prints the budget table.
export RPA_PHASES := $(REPORTS)/phases.tsv
TIMED := python3 $(CURDIR)/tools/timed.py
# README, "Test budget": the wall-time target of `make test` in minutes.
TEST_BUDGET_MINUTES := 30

# The repository's modules and plugins, a local collection (README, "Why a local collection"), and the
# ansible-test sanity tests `make sanity` runs on it: all of 2.19's except pylint (its naming rules, ~20 s)
# and those with nothing to check here (changelog, pslint, shellcheck).
COLLECTION := $(CURDIR)/collections/ansible_collections/rpa/engine
SANITY_TESTS := action-plugin-docs ansible-doc compile empty-init ignores import line-endings no-assert \
  no-get-exception no-illegal-filenames no-smart-quotes pep8 replace-urlopen runtime-metadata shebang symlinks \
  use-argspec-type-path use-compat-six validate-modules yamllint
# Expanded when a recipe runs (after `venv`): ansible-test tests with the venv's Python version.
VENV_PYTHON_VERSION = $(shell $(VENV)/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

DEMO_NAME := rpa-demo
DEMO_SSH_PORT := 2222
DEMO_HTTP_PORT := 8880
DEMO_HTTPS_PORT := 8443

.PHONY: help venv testbed demo-vault demo verify-demo destroy test budget-start lint sanity unit molecule \
  molecule-converge molecule-verify molecule-scaleout test-scaleout molecule-split test-split test-prereqs docs bench-noop

help:
	@echo "make demo     provision a local simulated server with site.yml (re-run to converge again)"
	@echo "make destroy  remove the demo server"
	@echo "make verify-demo  run the Molecule verify tests against the demo server"
	@echo "make test     yamllint, ansible-lint, ansible-test sanity, unit tests, Molecule (create/converge/idempotence/verify/destroy)"
	@echo "make test-scaleout  the scale-out scenario alone (three servers: firewall peers, Docker, Swarm)"
	@echo "make test-split     the split scenario alone (an app host on Compose against a one-member Patroni cluster)"
	@echo "make sanity   ansible-test sanity on the local collection rpa.engine (part of make lint)"
	@echo "make docs     regenerate the README's variable tables from meta/argument_specs.yml"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@python3 -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(TIMED) "venv" -- $(VENV)/bin/pip install -q -r requirements.txt
	touch $@

# `sink`: the alert receiver (SMTP, HTTPS webhook) the servers' Alertmanager delivers to.
# `registry`: the image registry the app role pulls from; `offsite`: the SFTP host of pgBackRest's repository.
# $(TESTBED_PREREQS_DONE) says the packages are in (`make test` starts lint and the unit tests then).
TESTBED_PREREQS_DONE := $(REPORTS)/testbed-prereqs.done
testbed:
	mkdir -p $(REPORTS)
	$(TIMED) "testbed: packages" -- $(TESTBED) prereqs
	touch $(TESTBED_PREREQS_DONE)
	$(TIMED) "testbed: engine, images" -- sh -c '$(TESTBED) engine && \
	  $(TESTBED) images && $(TESTBED) save-images && $(TESTBED) sink && $(TESTBED) registry && $(TESTBED) offsite'

demo: venv testbed demo-vault
	$(TESTBED) up $(DEMO_NAME) --ssh-port $(DEMO_SSH_PORT) \
	  --http-port $(DEMO_HTTP_PORT) --https-port $(DEMO_HTTPS_PORT)
	ansible-playbook site.yml -i inventory/demo

# The Molecule verify tests, run against the demo server instead.
verify-demo: venv demo-vault
	$(TESTBED) up $(DEMO_NAME) --ssh-port $(DEMO_SSH_PORT) \
	  --http-port $(DEMO_HTTP_PORT) --https-port $(DEMO_HTTPS_PORT)
	pytest -p no:cacheprovider molecule/default/tests --hosts=ssh://root@127.0.0.1:$(DEMO_SSH_PORT) \
	  --ssh-config=$(RPA_TESTBED_DIR)/ssh/config $(PYTEST_ARGS)

destroy:
	$(TESTBED) down $(DEMO_NAME)

demo-vault: venv
	python3 tools/demo_vault.py

lint: venv demo-vault
	$(TIMED) "lint: yamllint" -- yamllint --strict .
	$(TIMED) "lint: workflow schema" -- check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(TIMED) "lint: ansible-lint" -- ansible-lint --offline --profile production
	$(TIMED) "lint: role docs, secret scan" -- sh -c \
	  'python3 tools/role_docs.py --check README.md && python3 tools/secret_scan.py'
	$(SANITY)

# ansible-test finds the collection's files through git (tracked and untracked, not ignored) and keeps one
# virtual environment per test in ~/.ansible/test/venv: the first run installs them from PyPI, later runs
# reuse them. tools/ansible_test_pip.py provides the pip bootstrap it would otherwise download from
# ci-files.testing.ansible.com.
define SANITY
python3 tools/ansible_test_pip.py
cd $(COLLECTION) && $(TIMED) "lint: ansible-test sanity" -- ansible-test sanity --color no \
  --python $(VENV_PYTHON_VERSION) $(addprefix --test ,$(SANITY_TESTS))
endef

sanity: venv
	$(SANITY)

unit: venv demo-vault
	mkdir -p $(REPORTS)
	$(TIMED) "unit" -- pytest tests/unit --junitxml=$(REPORTS)/unit.xml

# Molecule's sequence step by step (what `molecule test` runs), each timed. The
# server from a failed run stays up for a look; the next run destroys it first - only when something is left
# (tools/leftovers.py: servers, a Molecule state that says created, an off-site repository), since on a fresh
# machine the destroy costs half a minute of a contended CPU for nothing. Its `syntax` step is left out:
# ansible-lint's syntax-check covers the scenarios' playbooks, and the converge parses them first anyway.
MOLECULE := ANSIBLE_VAULT_IDENTITY_LIST=$(MOLECULE_VAULT_ID) $(TIMED)
# $(call DESTROY_OLD,scenario,phase label,leftovers.py options)
DESTROY_OLD = if python3 tools/leftovers.py $(1) $(3); then \
	  $(MOLECULE) "$(2): destroy (old)" -- molecule destroy -s $(1); \
	else echo "molecule/$(1): nothing left from an earlier run to destroy"; fi
molecule: molecule-converge molecule-verify

# `make test` readies the test bed once and says so to its sub-makes.
MOLECULE_DEPS := venv $(if $(RPA_TESTBED_READY),,testbed)
molecule-converge: $(MOLECULE_DEPS)
	mkdir -p $(REPORTS)
	$(if $(RPA_TESTBED_READY),,python3 tools/demo_vault.py --molecule)
	$(call DESTROY_OLD,default,molecule,)
	$(MOLECULE) "molecule: create" -- molecule create
	$(MOLECULE) "molecule: converge" -- molecule converge
	$(MOLECULE) "molecule: idempotence" -- molecule idempotence

# Verify in two lanes (molecule/default/tests/conftest.py, RPA_VERIFY_LANE): the DR drill's recovered server
# runs some modules in a pytest process of its own beside the rest; its output follows verify's.
molecule-verify: $(MOLECULE_DEPS)
	mkdir -p $(REPORTS)
	rm -f $(REPORTS)/molecule-recovered.log
	@rc=0; RPA_VERIFY_LANE=main $(MOLECULE) "molecule: verify" -- molecule verify || rc=$$?; \
	if [ -f $(REPORTS)/molecule-recovered.log ]; then \
	  echo "---- verify, the recovered server's lane ----"; cat $(REPORTS)/molecule-recovered.log; echo "----"; fi; \
	exit $$rc
	$(MOLECULE) "molecule: destroy" -- molecule destroy

# The scale-out scenario (issue 21): three servers, playbooks/scaleout.yml. Inside `make test` it runs
# beside the default scenario's create, converge and idempotence, and into its verify; alone: `make test-scaleout`.
molecule-scaleout: $(MOLECULE_DEPS)
	mkdir -p $(REPORTS)
	test -f .cache/molecule/vault-pass || python3 tools/demo_vault.py --molecule
	mkdir -p -m 0700 .cache/scaleout/host_vars .cache/scaleout/group_vars/all
	$(call DESTROY_OLD,scaleout,scaleout,--offsite rpa-so-cluster)
	$(MOLECULE) "scaleout: create" -- molecule create -s scaleout
	# Check mode on bare servers must not fail: the common role stops checking a host without python3-apt
	# (the apt module refuses check mode there) and says why, and every later role ends its play for it.
	$(MOLECULE) "scaleout: check mode, bare servers" -- molecule converge -s scaleout -- --check
	$(MOLECULE) "scaleout: converge" -- molecule converge -s scaleout
	$(MOLECULE) "scaleout: idempotence" -- molecule idempotence -s scaleout
	$(MOLECULE) "scaleout: verify" -- molecule verify -s scaleout
	$(MOLECULE) "scaleout: destroy" -- molecule destroy -s scaleout

test-scaleout: test-prereqs demo-vault molecule-scaleout

# The split example's two servers (one app host on Compose against a one-member Patroni cluster), converged by
# site.yml: after the scale-out scenario in its lane of `make test`; alone: `make test-split`.
molecule-split: $(MOLECULE_DEPS)
	mkdir -p $(REPORTS)
	test -f .cache/molecule/vault-pass || python3 tools/demo_vault.py --molecule
	mkdir -p -m 0700 .cache/split/host_vars .cache/split/group_vars/all
	$(call DESTROY_OLD,split,split,--offsite rpa-sp-cluster)
	$(MOLECULE) "split: create" -- molecule create -s split
	$(MOLECULE) "split: converge" -- molecule converge -s split
	$(MOLECULE) "split: idempotence" -- molecule idempotence -s split
	$(MOLECULE) "split: verify" -- molecule verify -s split
	$(MOLECULE) "split: destroy" -- molecule destroy -s split

test-split: test-prereqs demo-vault molecule-split

budget-start:
	mkdir -p $(REPORTS)
	rm -f $(RPA_PHASES) $(REPORTS)/*.xml $(CHECKS_LOG) $(SCALEOUT_LOG)
	date +%s > $(REPORTS)/started

# Lint and the unit tests (CPU, about 3 min) start as soon as the venv and the test bed's packages are in:
# the test bed's image builds (debootstrap, then apt in one build container after another) use one CPU of
# two, and what lint takes there it no longer takes from the converges. They never run beside verify, whose
# load and timing tests want the machine to themselves: their output follows the converge's, and either
# failing stops the run before verify, as it did when they ran first. The scale-out scenario (mostly waiting
# on apt, etcd and Patroni's lock) starts with Molecule's create under nice and may still be in its own verify
# when the default verify starts: niced, it gets a tenth of a contended CPU. Its output follows the default
# verify's, and its failure fails the run. The budget table's total is the wall time.
CHECKS_LOG := $(REPORTS)/lint-unit.log
SCALEOUT_LOG := $(REPORTS)/scaleout.log
TESTBED_LOG := $(REPORTS)/testbed.log
# The test bed (engine, images, service containers) is readied beside the venv's pip install; only one
# of them may use apt at a time, so python3-venv comes first. With EARLY_CHECKS (`make test`), once the venv
# and the test bed's packages (zstd, openssl: the unit tests use them) are in, `make lint unit` starts in the
# background ($$checks, its output in $(CHECKS_LOG)); the recipe that expands this waits for it. `hash -r`: this
# shell looked python3 up before the venv existed, and would keep running the system's.
define PREREQS
mkdir -p $(REPORTS); \
python3 -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }; \
venv_rc=0; bed_rc=0; checks=; rm -f $(TESTBED_PREREQS_DONE); \
$(MAKE) --no-print-directory testbed > $(TESTBED_LOG) 2>&1 & bed=$$!; \
$(MAKE) --no-print-directory venv || venv_rc=$$?; \
hash -r; \
if [ -n "$(EARLY_CHECKS)" ] && [ $$venv_rc -eq 0 ]; then \
  $(MAKE) --no-print-directory demo-vault && python3 tools/demo_vault.py --molecule || venv_rc=$$?; \
  while [ ! -f $(TESTBED_PREREQS_DONE) ] && kill -0 $$bed 2>/dev/null; do sleep 1; done; \
  if [ $$venv_rc -eq 0 ] && [ -f $(TESTBED_PREREQS_DONE) ]; then \
    $(MAKE) --no-print-directory lint unit > $(CHECKS_LOG) 2>&1 & checks=$$!; fi; \
fi; \
wait $$bed || bed_rc=$$?; \
echo "---- test bed (exit $$bed_rc) ----"; cat $(TESTBED_LOG); echo "----"
endef

test-prereqs:
	@$(PREREQS); exit $$(( venv_rc || bed_rc ))

test: EARLY_CHECKS := 1
test: budget-start
	@checks_rc=0; converge_rc=0; verify_rc=0; scaleout_rc=0; \
	echo "make test: lint and the unit tests run beside the test bed's image builds and Molecule's converge, the scale-out scenario beside Molecule's (their output below, after the converge)"; \
	$(PREREQS); \
	if [ $$(( venv_rc || bed_rc )) -ne 0 ]; then \
	  if [ -n "$$checks" ]; then wait $$checks; fi; exit 1; fi; \
	if [ -z "$$checks" ]; then echo "make test: lint and unit tests did not start" > $(CHECKS_LOG); checks_rc=1; fi; \
	nice -n 10 $(MAKE) --no-print-directory -k molecule-scaleout molecule-split RPA_TESTBED_READY=1 > $(SCALEOUT_LOG) 2>&1 & scaleout=$$!; \
	$(MAKE) --no-print-directory molecule-converge RPA_TESTBED_READY=1 || converge_rc=$$?; \
	if [ -n "$$checks" ]; then wait $$checks || checks_rc=$$?; fi; \
	echo "---- lint and unit tests (exit $$checks_rc) ----"; cat $(CHECKS_LOG); echo "----"; \
	if [ $$checks_rc -eq 0 ] && [ $$converge_rc -eq 0 ]; then \
	  $(MAKE) --no-print-directory molecule-verify RPA_TESTBED_READY=1 || verify_rc=$$?; \
	else echo "make test: lint/unit exit $$checks_rc, converge exit $$converge_rc: verify not run"; fi; \
	wait $$scaleout || scaleout_rc=$$?; \
	echo "---- scale-out scenario (exit $$scaleout_rc) ----"; cat $(SCALEOUT_LOG); echo "----"; \
	python3 tools/test_summary.py --started $(REPORTS)/started --phases $(RPA_PHASES) \
	  --budget $(TEST_BUDGET_MINUTES) $(REPORTS)/*.xml || verify_rc=1; \
	exit $$(( checks_rc || converge_rc || verify_rc || scaleout_rc ))

docs:
	python3 tools/role_docs.py --write README.md

bench-noop: venv demo-vault
	bench/noop_rerun
