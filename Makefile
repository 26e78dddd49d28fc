# flare: everything builds into $(BUILD). `make help` lists the targets.
BUILD ?= build
CC ?= cc
CLANG ?= clang
CFLAGS ?= -O2 -g
FUZZ_SECONDS ?= 10
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
# the library and the demo programs, relative to PREFIX: flare-run finds the
# library at ../$(LIBSUBDIR) from its own folder (the package sets the
# multiarch path, lib/x86_64-linux-gnu/flare)
LIBSUBDIR ?= lib/flare
LIBEXECSUBDIR ?= libexec/flare

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2
# every build (release, sanitizers, fuzzers) compiles with these
STD := -std=gnu11 -D_GNU_SOURCE -MMD -MP $(WARN)
# The layout is the dependency rule: common/ is libc only and links into
# libflare.so; control/ (libconfig, libevent, uthash) only into the daemons,
# flarectl, flare-run and tests. The library is compiled without -Icontrol,
# so it cannot include control-plane code by mistake.
LIB_CPPFLAGS := -Icommon -Ishim/core
# flare-run and flarectl read the host's config when no -c names one
BASE := $(STD) -fPIC -Icommon -Icontrol -DFLARE_DEFAULT_CONFIG='"$(SYSCONFDIR)/flare/flare.conf"'
DAEMON_LIBS := -lconfig -levent -lsodium
TEST_LIBS := -lcmocka -lconfig -levent -lsodium -lpthread -lm

COMMON_LIBC := $(wildcard common/*.c)
CONTROL_SRC := $(wildcard control/*.c)
COMMON_ALL := $(COMMON_LIBC) $(CONTROL_SRC)

# shim/lib: one file per interposed call; shim/core: the library's logic
SHIM_SRC := $(wildcard shim/lib/*.c) $(wildcard shim/core/*.c) $(wildcard shim/core/*/*.c)
# Code a client that never fails does not run links last, after the hot
# code: a read fault on text maps the 64 KiB around it (the kernel's
# fault-around), so the hot code's few windows are all such a client
# carries. Cold: the TLS layer, healing, the framers and sessions, the
# server side, rebinding, reactive queries, event loops other than poll,
# and the rarer hooks.
TLS_SRC := $(wildcard shim/lib/ssl_*.c) $(wildcard shim/core/tls/*.c)
SHIM_COLD_SRC := $(wildcard shim/core/heal/*.c) $(wildcard shim/core/server/*.c) \
	$(filter-out shim/core/frame/frame.c,$(wildcard shim/core/frame/*.c)) \
	shim/core/io/epreg.c shim/core/route/rebind.c shim/core/route/query.c \
	common/names.c $(addprefix shim/lib/,epoll.c select.c mmsg.c splice.c sendfile.c \
	fdopen.c listen.c) common/wire.c common/fwcall.c $(TLS_SRC)
UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
FUZZERS := fuzz_frame fuzz_hello fuzz_register fuzz_report fuzz_rank fuzz_text fuzz_query \
	fuzz_table fuzz_config fuzz_auth fuzz_framer_redis fuzz_framer_http fuzz_framer_mc \
	fuzz_framer_http_scalar

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

.PHONY: all check unit integration asan tsan fuzz fuzz-build bench demo soak install clean transparency chaos \
	deps format help lib-sanitizers lib-asan lib-tsan check-hosts deb check-deb
DAEMONS := flare-manager flare-monitor flare-agent flarectl
BINS := $(addprefix $(BUILD)/,$(DAEMONS)) $(BUILD)/libflare.so $(BUILD)/flare-run \
	$(BUILD)/rr-server $(BUILD)/rr-client
all: $(BUILD)/libflare-common.a $(BINS)

# each daemon is its folder's .c files plus the common library
$(BUILD)/flare-manager: $(call obj,$(wildcard manager/*.c)) $(BUILD)/libflare-common.a
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(DAEMON_LIBS) -lm
$(BUILD)/flare-monitor: $(call obj,$(wildcard monitor/*.c)) $(BUILD)/libflare-common.a
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(DAEMON_LIBS) -lm
$(BUILD)/flare-agent: $(call obj,$(wildcard agent/*.c)) $(BUILD)/libflare-common.a
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(DAEMON_LIBS) -lm
$(BUILD)/flarectl: $(call obj,$(wildcard tools/*.c)) $(BUILD)/libflare-common.a
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(DAEMON_LIBS) -lm
$(BUILD)/flare-run: $(BUILD)/obj/shim/flare-run.o $(BUILD)/libflare-common.a
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ -lconfig
$(BUILD)/obj/shim/flare-run.o: BASE += -DFLARE_LIBSUBDIR='"$(LIBSUBDIR)"' \
	-DFLARE_LIBDIR='"$(PREFIX)/$(LIBSUBDIR)"'

# libflare.so: its own objects, every symbol hidden but the hooks (it lives
# inside other programs and must not clash with theirs); libc only.
SHIM_HOT_OBJ := $(patsubst %.c,$(BUILD)/shimobj/%.o,$(filter-out $(SHIM_COLD_SRC),$(SHIM_SRC) \
	$(COMMON_LIBC)))
SHIM_COLD_OBJ := $(patsubst %.c,$(BUILD)/shimobj/%.o,$(SHIM_COLD_SRC))
SHIM_OBJ := $(SHIM_HOT_OBJ) $(SHIM_COLD_OBJ)
# libc_nonshared.a's pthread_atfork, called at init, links among the hot
# code instead of after it (the driver adds the archive last)
LIBC_NONSHARED := $(shell $(CC) -print-file-name=libc_nonshared.a)
$(BUILD)/shimobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(LIB_CPPFLAGS) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@
$(BUILD)/libflare.so: $(SHIM_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-z,now -Wl,--no-undefined $(SHIM_HOT_OBJ) \
	    $(wildcard $(LIBC_NONSHARED)) $(SHIM_COLD_OBJ) -o $@

$(BUILD)/rr-server: $(BUILD)/obj/examples/rr-server.o $(BUILD)/obj/examples/rr-proto.o
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@
$(BUILD)/rr-client: $(BUILD)/obj/examples/rr-client.o $(BUILD)/obj/examples/rr-proto.o
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ -lm

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libflare-common.a: $(call obj,$(COMMON_ALL))
	@rm -f $@
	ar rcs $@ $^

# ---- tests ----
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libflare-common.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) -Itests/unit $< -o $@ $(BUILD)/libflare-common.a $(TEST_LIBS)

# the library's core (everything but the hooks) for its unit tests: the
# same objects that go into libflare.so
CORE_OBJ := $(filter-out $(BUILD)/shimobj/shim/lib/%,$(SHIM_OBJ))
$(BUILD)/libflare-core.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/tests/test_core: tests/unit/test_core.c $(BUILD)/libflare-core.a
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(LIB_CPPFLAGS) $(CFLAGS) $< -o $@ $(BUILD)/libflare-core.a -lcmocka -lpthread
$(BUILD)/tests/test_frame: tests/unit/test_frame.c $(BUILD)/libflare-core.a
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(LIB_CPPFLAGS) $(CFLAGS) $< -o $@ $(BUILD)/libflare-core.a -lcmocka -lpthread
# the manager's state, without its main()
MANAGER_OBJ := $(call obj,$(filter-out manager/main.c,$(wildcard manager/*.c)))
$(BUILD)/tests/test_delta $(BUILD)/tests/test_plan: $(BUILD)/tests/%: tests/unit/%.c $(MANAGER_OBJ) \
		$(BUILD)/libflare-common.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -Imanager $(CFLAGS) $< -o $@ $(MANAGER_OBJ) $(BUILD)/libflare-common.a \
		$(TEST_LIBS)

deps:
	@sh scripts/deps.sh build test fuzz demo

unit: all $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))
	@sh tests/run-unit.sh $(BUILD)/tests $(UNIT_TESTS)

PROGS := $(patsubst tests/progs/%.c,$(BUILD)/tests/progs/%,$(wildcard tests/progs/*.c))
# a control-plane peer through the real authentication
$(BUILD)/tests/progs/authpeer: tests/progs/authpeer.c $(BUILD)/libflare-common.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $(filter %.c %.a,$^) -o $@ $(DAEMON_LIBS) -lm
# the proof cases send through io_uring too
$(BUILD)/tests/progs/proofcase: tests/progs/proofcase.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $< -o $@ -luring
# a blocking TLS reader links OpenSSL (the library never does)
$(BUILD)/tests/progs/tlsread: tests/progs/tlsread.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $< -o $@ -lssl -lcrypto
$(BUILD)/tests/progs/%: tests/progs/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $< -o $@ -lpthread

BENCH_PROGS := $(BUILD)/bench/rankcost $(BUILD)/bench/propagation $(BUILD)/bench/nbclient \
	$(BUILD)/bench/framecost $(BUILD)/bench/fleetwatch $(BUILD)/bench/protoclient \
	$(BUILD)/bench/tlsclient
# the framers as they are compiled into the library
$(BUILD)/bench/framecost: tests/bench/framecost.c \
		$(filter-out %/framed.o,$(filter $(BUILD)/shimobj/shim/core/frame/frame%,$(SHIM_OBJ)))
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(LIB_CPPFLAGS) $(CFLAGS) $^ -o $@
$(BUILD)/bench/nbclient: tests/bench/nbclient.c $(BUILD)/obj/examples/rr-proto.o
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) -Iexamples $^ -o $@
$(BUILD)/bench/protoclient: tests/bench/protoclient.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $< -o $@
# a TLS client of its own links OpenSSL (the library never does)
$(BUILD)/bench/tlsclient: tests/bench/tlsclient.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $< -o $@ -lssl -lcrypto
$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libflare-common.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $< -o $@ $(BUILD)/libflare-common.a $(DAEMON_LIBS) -lm

# ratios measured side by side in one run; BENCH_ARGS=--quick for a short run
bench: deps all $(BENCH_PROGS)
	@sh scripts/deps.sh bench
	@python3 tests/bench/bench.py $(BUILD) $(BENCH_ARGS)

# SIGKILLs of serving replicas under checked load (not in check):
# SOAK_ARGS="--kills 10000" by default; docs/EVALUATION.md has the figures
soak: all $(BUILD)/bench/nbclient
	@sh scripts/deps.sh test
	@python3 scripts/soak.py $(BUILD) $(SOAK_ARGS)

# FLARe's testbed experiment (DEMO_ARGS), then TAO's load-balancing
# experiments (TAO_ARGS, e.g. --seconds 20)
demo: deps all
	@sh scripts/deps.sh demo
	@python3 scripts/testbed.py $(BUILD) $(DEMO_ARGS)
	@python3 scripts/tao.py $(BUILD) $(TAO_ARGS)

# binaries, the library, man pages, systemd units (for PREFIX's binaries and
# SYSCONFDIR/flare/flare.conf), the example config, and a single-host
# SYSCONFDIR/flare/flare.conf unless one is there (the package's conffile)
UNITDIR ?= $(PREFIX)/lib/systemd/system
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/$(LIBSUBDIR) \
		$(DESTDIR)$(PREFIX)/$(LIBEXECSUBDIR) $(DESTDIR)$(PREFIX)/share/flare \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(UNITDIR)
	install -m 755 $(addprefix $(BUILD)/,$(DAEMONS)) $(BUILD)/flare-run $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(BUILD)/rr-server $(BUILD)/rr-client $(DESTDIR)$(PREFIX)/$(LIBEXECSUBDIR)/
	install -m 644 $(BUILD)/libflare.so $(DESTDIR)$(PREFIX)/$(LIBSUBDIR)/
	install -m 644 conf/example.conf $(DESTDIR)$(PREFIX)/share/flare/
	install -d $(DESTDIR)$(SYSCONFDIR)/flare
	[ -e $(DESTDIR)$(SYSCONFDIR)/flare/flare.conf ] || \
		install -m 644 dist/flare.conf $(DESTDIR)$(SYSCONFDIR)/flare/flare.conf
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	for u in dist/systemd/*; do \
		sed 's|@BINDIR@|$(PREFIX)/bin|g; s|@CONFDIR@|$(SYSCONFDIR)/flare|g' $$u \
			> $(DESTDIR)$(UNITDIR)/$$(basename $$u); \
	done

integration: all $(PROGS) $(BUILD)/bench/nbclient
	@sh tests/run-integration.sh $(BUILD)

# the differential transparency fuzzer's long mode: random programs, each
# traced with and without the library, for TRANSPARENCY_SECONDS (make check
# runs its fixed seed list, tests/integration/test_transparency.py)
TRANSPARENCY_SECONDS ?= 600
transparency: deps all $(PROGS)
	@sh scripts/deps.sh test
	@python3 -u tests/integration/test_transparency.py $(BUILD) --seconds $(TRANSPARENCY_SECONDS)

# the chaos suite at length: both cores busy, then daemons and replicas
# killed, restarted and stopped under real clients, CHAOS_SECONDS each
# (make check runs it for 15 s, tests/integration/test_chaos.py)
CHAOS_SECONDS ?= 60
chaos: deps all $(PROGS)
	@sh scripts/deps.sh test
	@CHAOS_SECONDS=$(CHAOS_SECONDS) python3 -u tests/integration/test_chaos.py $(BUILD)

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@if command -v $(CLANG) >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$${CHECK_FUZZ_SECONDS:-3}; \
	else echo "fuzz: clang not found, fuzz run skipped"; fi

# a Debian package from the tree (debian/, debhelper): build/deb/flare_*.deb
deb: deps
	@sh scripts/deps.sh deb
	dpkg-buildpackage -b -us -uc
	@mkdir -p $(BUILD)/deb
	@v=$$(dpkg-parsechangelog -S Version); for f in ../flare_$${v}_* ../flare-dbgsym_$${v}_*; do \
		[ ! -e "$$f" ] || mv "$$f" $(BUILD)/deb/; done
	@ls $(BUILD)/deb/*.deb

# the package installed by dpkg into a root of its own, then run from there
check-deb: deb
	@sh tests/deb/check-deb.sh $(BUILD)

# flare across real links: hosts as network namespaces on a bridge (root)
check-hosts: deps all
	@sh scripts/deps.sh hosts
	@python3 -u tests/hosts/hosts.py $(BUILD)

# unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
asan: deps
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/asan \
		CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		LDFLAGS="-fsanitize=address,undefined" unit

tsan: deps
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/tsan \
		CFLAGS="-O1 -g -fsanitize=thread" unit

# libflare.so built by the same rules with a sanitizer, and preloaded
# (after the sanitizer's runtime) into the failover tests' real clients
SAN_CFLAGS := -O1 -g -fno-omit-frame-pointer
lib-asan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/lib-asan \
		CFLAGS="$(SAN_CFLAGS) -fsanitize=address,undefined" $(BUILD)/lib-asan/libflare.so
lib-tsan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/lib-tsan \
		CFLAGS="$(SAN_CFLAGS) -fsanitize=thread" $(BUILD)/lib-tsan/libflare.so
lib-sanitizers: all $(PROGS)
	@$(MAKE) --no-print-directory lib-asan lib-tsan
	@sh tests/run-lib-sanitizers.sh $(BUILD)

# ---- fuzzing (clang + libFuzzer) ----
# one compiler call per target (several sources): headers are listed, not
# tracked with -MMD
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(WARN) -g -O1 -Icommon -Icontrol \
	-fsanitize=fuzzer,address,undefined
FUZZ_SRC := $(COMMON_LIBC) control/config.c control/config_keys.c
FUZZ_HDR := $(wildcard common/*.h control/*.h)
$(BUILD)/fuzz/fuzz_frame: tests/fuzz/fuzz_frame.c $(FUZZ_SRC) $(FUZZ_HDR)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) $(filter %.c,$^) -o $@ -lconfig
$(BUILD)/fuzz/fuzz_table: tests/fuzz/fuzz_table.c $(FUZZ_SRC) $(FUZZ_HDR)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) $(filter %.c,$^) -o $@ -lconfig
$(BUILD)/fuzz/fuzz_config: tests/fuzz/fuzz_config.c $(FUZZ_SRC) $(FUZZ_HDR)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) $(filter %.c,$^) -o $@ -lconfig
$(BUILD)/fuzz/fuzz_auth: tests/fuzz/fuzz_auth.c $(FUZZ_SRC) control/auth.c control/evconn.c \
		$(FUZZ_HDR)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) $(filter %.c,$^) -o $@ -lconfig -levent -lsodium
FRAMER_SRC := $(addprefix shim/core/frame/,frame.c frame_http.c frame_mc.c frame_redis.c)
# one target per framer, from one source; http_scalar: HTTP without SIMD,
# the path machines without SSE2 take
$(BUILD)/fuzz/fuzz_framer_%: tests/fuzz/fuzz_framer.c $(FRAMER_SRC) $(wildcard shim/core/frame/frame*.h)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -Ishim/core $(if $(filter %_scalar,$*),-DFR_SCALAR) \
		-DFUZZ_PROTO=$(if $(filter redis,$*),PROTO_REDIS,$(if $(filter http%,$*),PROTO_HTTP,PROTO_MEMCACHED)) \
		$(filter %.c,$^) -o $@
# one target per message decoder, from one source
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_decoder.c $(FUZZ_SRC) $(FUZZ_HDR)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -DFUZZ_DECODER=$* $(filter %.c,$^) -o $@ -lconfig

fuzz-build: $(addprefix $(BUILD)/fuzz/,$(FUZZERS))

fuzz: fuzz-build
	@sh tests/run-fuzz.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZERS)

clean:
	rm -rf $(BUILD)

format:
	clang-format -i $$(git ls-files "*.c" "*.h")

help:
	@echo "make          build everything into $(BUILD)/"
	@echo "make check    install missing packages, build, run unit + integration tests and a short fuzz"
	@echo "make demo     run the FLARe experiment, then TAO's load-balancing ones, on this machine"
	@echo "make check-hosts   failures across hosts in network namespaces (root)"
	@echo "make deb      a Debian package (build/deb/)"
	@echo "make bench    benchmarks (ratios measured side by side)"
	@echo "make soak     10,000 SIGKILLs of serving replicas under checked load (SOAK_ARGS=)"
	@echo "make asan     unit tests under ASan+UBSan;  make tsan: under ThreadSanitizer"
	@echo "make fuzz FUZZ_SECONDS=N   every fuzz target for N seconds"
	@echo "make transparency TRANSPARENCY_SECONDS=N   random programs traced with and without flare"
	@echo "make chaos CHAOS_SECONDS=N   load, then daemons and replicas killed and stopped under clients"
	@echo "make install PREFIX=/usr/local DESTDIR="

-include $(shell find $(BUILD)/obj $(BUILD)/shimobj $(BUILD)/tests -name '*.d' 2>/dev/null)
