# earshot - build, run and test. `make run` and `make test` are the two
# commands a newcomer needs; both install missing Debian packages first.
#
#   make            build build/earshotd and build/earshot
#   make run        start one dev node on 127.0.0.1:8080 (no Redis)
#   make test       unit + integration tests, fuzz corpus replay, then the
#                   whole suite again under ASan/UBSan (build-san/)
#   make fuzz       run the libFuzzer target for FUZZ_SECONDS (default 60)
#   make SAN=1 ...  build with AddressSanitizer + UBSan into build-san/

CC      ?= cc
PKGS    := libwebsockets jansson libjwt openssl libsrtp2 opus hiredis
SAN     ?=
B       := $(if $(SAN),build-san,build)
SANITIZERS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SANFLAGS := $(if $(SAN),$(SANITIZERS))
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -I. -I$(B) $(SANFLAGS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libev ships no pkg-config file on Debian 12.
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lm
LDFLAGS += $(SANFLAGS)
CMOCKA  := $(shell pkg-config --libs cmocka 2>/dev/null)

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)

# Pure logic: no sockets, no clocks. Unit tests link against this.
CORE_SRC := proto/proto.c proto/rtp.c proto/media.c proto/media_crypto.c server/log.c server/config.c server/auth.c server/relay.c \
            server/matcher.c server/slot.c server/metrics.c server/quality.c server/ratings.c
# I/O: the loop glue, the transport and the hub that wires everything.
SERVER_SRC := server/ws.c server/web.c server/resume.c server/store_mem.c server/store_redis.c \
              server/pipe.c server/span.c server/stats.c server/hub.c server/session.c server/main.c \
              client-demo/esclient.c
CLIENT_LIB_SRC := client-demo/esclient.c client-demo/voice.c client-demo/wav.c
CLIENT_SRC := client-demo/earshot.c
LOADTEST_SRC := loadtest/main.c loadtest/party.c loadtest/traffic.c loadtest/measure.c \
                loadtest/probe.c loadtest/report.c

obj = $(patsubst %.c,$(B)/%.o,$(1))
CORE_OBJ := $(call obj,$(CORE_SRC))

UNIT_TESTS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(wildcard tests/unit/test_*.c))
INTEG_TESTS := $(patsubst tests/integration/%.c,$(B)/tests/%,$(wildcard tests/integration/test_*.c))

.PHONY: FORCE all binaries deps test-deps run test check unit integration integration-redis browser fuzz \
        fuzz-replay clean
.DEFAULT_GOAL := all

# The entry points (all, run, test, fuzz) install missing packages first and
# then run a second make: this one's pkg-config flags were read before the
# install, and on a fresh machine they would be empty.
all: deps
	@$(MAKE) --no-print-directory binaries

binaries: $(B)/earshotd $(B)/earshot $(B)/earshot-loadtest

deps:
	@.ci/install-deps build
test-deps:
	@.ci/install-deps test

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Rewritten only when the version changes, so only what prints it rebuilds
# and a stale version is never printed.
$(B)/version.h: FORCE
	@mkdir -p $(B)
	@echo '#define EARSHOT_VERSION "$(VERSION)"' > $@.new
	@if cmp -s $@.new $@; then rm -f $@.new; else mv $@.new $@; fi
FORCE:
$(B)/server/main.o $(B)/client-demo/earshot.o: $(B)/version.h

# The Redis Functions of the shared queue, compiled in as one C string.
$(B)/store_lua.h: server/store.lua
	@mkdir -p $(B)
	@{ echo '#define STORE_LUA \'; \
	   sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n" \\/' $<; \
	   echo '""'; } > $@
$(B)/server/store_redis.o: $(B)/store_lua.h

$(B)/libcore.a: $(CORE_OBJ)
	ar rcs $@ $^

$(B)/earshotd: $(call obj,$(SERVER_SRC)) $(B)/libcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/earshot: $(call obj,$(CLIENT_SRC) $(CLIENT_LIB_SRC)) $(B)/libcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/earshot-loadtest: $(call obj,$(LOADTEST_SRC) $(CLIENT_LIB_SRC)) $(B)/libcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# A unit test may #include the module's .c to reach its static functions;
# the archive then supplies only what the test does not define itself.
$(B)/tests/test_%: tests/unit/test_%.c $(B)/libcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libcore.a $(LDLIBS) $(CMOCKA)

$(B)/tests/test_%: tests/integration/test_%.c tests/integration/harness.c \
                   tests/integration/harness.h $(call obj,$(CLIENT_LIB_SRC)) $(B)/libcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< tests/integration/harness.c \
	    $(call obj,$(CLIENT_LIB_SRC)) $(B)/libcore.a $(LDLIBS) $(CMOCKA)

run: all
	$(B)/earshotd --config configs/dev.conf

unit: $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $$t; done

integration: binaries $(INTEG_TESTS)
	@set -e; for t in $(INTEG_TESTS); do echo "== $$t"; \
	    EARSHOTD=$(B)/earshotd EARSHOT=$(B)/earshot EARSHOT_LOADTEST=$(B)/earshot-loadtest $$t; done

# The same tests on the other backend: every server they start keeps
# presence and the queue in a redis-server of the test's own.
REDIS_PARITY := journey lifecycle badinput cli media_relay web care resume feedback
integration-redis: binaries $(INTEG_TESTS)
	@set -e; for t in $(REDIS_PARITY); do echo "== $(B)/tests/test_$$t on Redis"; \
	    EARSHOT_TEST_REDIS=1 EARSHOTD=$(B)/earshotd EARSHOT=$(B)/earshot \
	    EARSHOT_LOADTEST=$(B)/earshot-loadtest $(B)/tests/test_$$t; done

# Browser tests: Debian's Chromium driven by playwright-core (npm ci from
# the lock file; no browser is downloaded). Screenshots: build/screenshots.
BROWSER_TESTS := $(wildcard tests/browser/*.test.mjs)
browser: binaries
ifneq ($(BROWSER_TESTS),)
	cd tests/browser && npm ci --no-audit --no-fund --silent
	EARSHOTD=$(CURDIR)/$(B)/earshotd SCREENSHOTS=$(CURDIR)/$(B)/screenshots \
	    node --test --test-concurrency=1 $(BROWSER_TESTS)
endif

check: unit fuzz-replay integration integration-redis browser

# The whole suite: a normal pass, then one under the sanitizers.
test: test-deps
	$(MAKE) check
	$(MAKE) SAN=1 check
	@echo "make test: all passes green"

# libFuzzer needs clang; the replay of the kept corpus builds with $(CC).
FUZZ_SECONDS ?= 60
$(B)/fuzz/fuzz_proto: tests/fuzz/fuzz_proto.c proto/proto.c proto/proto.h
	@mkdir -p $(dir $@)
	clang -g -O1 -std=c11 -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined \
	    $(shell pkg-config --cflags jansson) -o $@ tests/fuzz/fuzz_proto.c proto/proto.c \
	    $(shell pkg-config --libs jansson)
$(B)/fuzz/replay_proto: tests/fuzz/fuzz_proto.c tests/fuzz/replay.c $(B)/libcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ tests/fuzz/fuzz_proto.c tests/fuzz/replay.c $(B)/libcore.a $(LDLIBS)

$(B)/fuzz/fuzz_media: tests/fuzz/fuzz_media.c proto/rtp.c proto/media.c proto/media_crypto.c proto/rtp.h proto/media.h
	@mkdir -p $(dir $@)
	clang -g -O1 -std=c11 -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined \
	    -o $@ tests/fuzz/fuzz_media.c proto/rtp.c proto/media.c proto/media_crypto.c \
	    $(shell pkg-config --cflags --libs libsrtp2 opus openssl)
$(B)/fuzz/replay_media: tests/fuzz/fuzz_media.c tests/fuzz/replay.c $(B)/libcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ tests/fuzz/fuzz_media.c tests/fuzz/replay.c $(B)/libcore.a $(LDLIBS)

# Each target runs FUZZ_SECONDS; new crashing inputs land in its crashes dir.
fuzz: test-deps
	@$(MAKE) --no-print-directory $(B)/fuzz/fuzz_proto $(B)/fuzz/fuzz_media
	@mkdir -p $(B)/fuzz/new-corpus $(B)/fuzz/new-media-corpus tests/fuzz/media_crashes
	$(B)/fuzz/fuzz_proto -max_total_time=$(FUZZ_SECONDS) -max_len=16384 \
	    -artifact_prefix=tests/fuzz/crashes/ $(B)/fuzz/new-corpus tests/fuzz/corpus
	$(B)/fuzz/fuzz_media -max_total_time=$(FUZZ_SECONDS) -max_len=2048 \
	    -artifact_prefix=tests/fuzz/media_crashes/ $(B)/fuzz/new-media-corpus tests/fuzz/media_corpus

fuzz-replay: $(B)/fuzz/replay_proto $(B)/fuzz/replay_media
	$(B)/fuzz/replay_proto tests/fuzz/corpus tests/fuzz/crashes
	$(B)/fuzz/replay_media tests/fuzz/media_corpus tests/fuzz/media_crashes

# The benchmark (loadtest/bench.sh): servers on core 0, the load generator
# on core 1; writes bench/RESULTS.md and each run's JSON and chart. Its
# BENCH_* variables (parts, counts, seconds) come from the environment.
.PHONY: bench
bench:
	@.ci/install-deps bench
	@$(MAKE) --no-print-directory binaries
	BUILD=$(B) loadtest/bench.sh

clean:
	rm -rf build build-san

-include $(shell find build build-san -name '*.d' 2>/dev/null)
