# Every target sets itself up from nothing and is idempotent: Debian packages
# (apt-get when root), the virtual environment, the pinned pip packages.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# The P4Runtime bindings (dysco.proto), generated from the locked p4runtime package's descriptors
# by grpcio-tools: that package's own modules do not import under protobuf's upb implementation.
# The package's __init__.py is written last, so it is the stamp.
PROTO   := dysco/proto/__init__.py
# p4runtime-shell 0.0.6 needs protobuf < 3.21, so it gets an environment of its own
# (requirements-p4rtsh.lock) that only its compatibility test uses, as a subprocess.
SHVENV  := .venv-p4rtsh
SHSTAMP := $(SHVENV)/.installed
# Debian packages the project uses at run or test time (see scripts/ensure-debs.sh): clang-16, llvm-16,
# libbpf-dev and bpftool build, load and inspect the ebpf target; libgc1, libboost-iostreams1.74.0 and
# libprotobuf32 are the runtime libraries of the real p4c in ../shared/tools/p4c that tests/p4src/test_p4c.py runs;
# etcd-server and etcd-client are the fleet's store (docs/fleet.md; its tests start their own etcd).
DEBS    := libpcap0.8 cpp iproute2 ethtool iptables conntrack iperf3 haproxy openssl \
           clang-16 llvm-16 libbpf-dev bpftool libgc1 libboost-iostreams1.74.0 libprotobuf32 \
           etcd-server etcd-client
PYTEST_ARGS ?=
# rounds of tests/e2e/test_chaos.py in `make soak` (`make test` runs 6)
CHAOS_ROUNDS ?= 40

.PHONY: all demo test lint typecheck unit ptf soak bench setup p4rtsh debs lock clean

all: test

debs:
	@scripts/ensure-debs.sh $(DEBS)

# --clear: packages an older lock brought (p4runtime-shell, protobuf 3's .pth files) do not linger.
$(STAMP): requirements.lock pyproject.toml
	$(PY) -m venv --clear $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(PROTO): $(STAMP) scripts/gen_p4rt_bindings.py
	$(BIN)/python scripts/gen_p4rt_bindings.py

setup: debs $(STAMP) $(PROTO)

$(SHSTAMP): requirements-p4rtsh.lock
	$(PY) -m venv --clear $(SHVENV)
	$(SHVENV)/bin/pip install -q --disable-pip-version-check -r requirements-p4rtsh.lock
	touch $@

p4rtsh: $(SHSTAMP)

# The end-to-end story (README, "Run it"): on network namespaces as root, else in the simulation.
demo: setup
	$(BIN)/dysco demo --out demo-out

# ruff, then no import cycle between the modules of the dysco package and of bench/ and ptf_tests/
# (scripts/check_import_cycles.py).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_import_cycles.py dysco bench ptf_tests

typecheck: setup
	$(BIN)/mypy

unit: setup p4rtsh
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

# The README's test command: lint, strict type check, then the whole suite.
test: lint typecheck unit

# The PTF suite on the default target (bmv2 if installed, else dysco switch); needs root.
ptf: setup
	$(BIN)/python -m ptf_tests.run

# wrk and nginx: bench.e2e_goodput's request rate as the paper measured it
BENCH_DEBS := wrk nginx-light

bench: setup
	@scripts/ensure-debs.sh $(BENCH_DEBS)
	$(BIN)/python -m bench.compile_policies
	$(BIN)/python -m bench.softswitch_pps
	$(BIN)/python -m bench.dataplane_pps
	$(BIN)/python -m bench.agent_setup
	$(BIN)/python -m bench.policy_reload
	$(BIN)/python -m bench.fleet_fanout
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/python -m bench.punt_path && $(BIN)/python -m bench.e2e_goodput && \
	  $(BIN)/python -m bench.reconf_time; \
	else echo "bench.punt_path, bench.e2e_goodput, bench.reconf_time: need root (network namespaces), skipped"; fi
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/python -m bench.session_table; else echo "bench.session_table: needs root (BPF), skipped"; fi
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/python -m bench.profile_setup; else echo "bench.profile_setup: needs root (network namespaces), skipped"; fi
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/python -m bench.punt_timeline; else echo "bench.punt_timeline: needs root (network namespaces, AF_PACKET), skipped"; fi

# Everything, slow tests included, with the hypothesis "soak" profile (many more examples), then
# coverage-guided fuzzing of the SYN-payload and control-message decoders (atheris) for
# FUZZ_SECONDS; a finding stops it and leaves its input in out/fuzz/.
FUZZ_SECONDS ?= 120
soak: setup p4rtsh
	$(BIN)/pytest -q --hypothesis-profile=soak $(PYTEST_ARGS)
	DYSCO_CHAOS_ROUNDS=$(CHAOS_ROUNDS) $(BIN)/pytest -q -s tests/e2e/test_chaos.py
	mkdir -p out/fuzz
	$(BIN)/python tests/security/fuzz_decoders.py -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=out/fuzz/

lock:
	rm -rf /tmp/dysco-lock && $(PY) -m venv /tmp/dysco-lock
	/tmp/dysco-lock/bin/pip install -q -e '.[test,plots,proto]'
	{ echo '# Exact versions tested together; `make` installs these. Regenerate with `make lock`.'; \
	  /tmp/dysco-lock/bin/pip freeze --all --exclude-editable | grep -v '^pip=='; } > requirements.lock
	rm -rf /tmp/dysco-lock-p4rtsh && $(PY) -m venv /tmp/dysco-lock-p4rtsh
	/tmp/dysco-lock-p4rtsh/bin/pip install -q p4runtime-shell==0.0.6 'googleapis-common-protos>=1.56.4,<1.57'
	{ echo '# p4runtime-shell and its protobuf 3.20 world, for its compatibility test only ($(SHVENV)).'; \
	  echo '# Regenerate with `make lock`.'; \
	  /tmp/dysco-lock-p4rtsh/bin/pip freeze --all | grep -v '^pip=='; } > requirements-p4rtsh.lock

clean:
	rm -rf $(VENV) $(SHVENV) dysco/proto build *.egg-info .mypy_cache .pytest_cache .ruff_cache .hypothesis
