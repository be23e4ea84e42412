# relayd — build, test, install.  Read top to bottom; every dependency comes from pkg-config.

PKGS    := libevent libevent_openssl libevent_pthreads openssl libsasl2 lmdb libcares libidn2
DEB_BUILD_DEPS := build-essential pkg-config libevent-dev libssl-dev libsasl2-dev liblmdb-dev libidn2-dev \
                  libsasl2-modules libc-ares-dev
# dnsmasq-base, not dnsmasq: the binary only, no system service taking port 53.
# chromium: the status page is tested as a browser renders it; cppcheck and
# clang-tidy: tests/lint; valgrind: tests/valgrind; clang, libclang-rt-14-dev:
# the fuzz targets (libFuzzer's runtime is in the latter).
DEB_TEST_DEPS  := swaks postfix python3 lmdb-utils sasl2-bin libsasl2-modules python3-aiosmtpd \
                  dnsmasq-base chromium cppcheck clang-tidy valgrind clang libclang-rt-14-dev
# `make bench`: Postfix (the relay to compare with, and smtp-source / smtp-sink), Python, and
# mdb_stat (the size of relayd's queue, read without asking relayd).
DEB_BENCH_DEPS := postfix python3 lmdb-utils

CC      ?= cc
PREFIX  ?= /usr/local
CFLAGS_BASE := -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wpointer-arith \
               -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wvla -g -I.
# Hardening (issue 10): stack canaries, position independence, full RELRO, and
# glibc's checked string and memory functions where sizes are known (FORTIFY 3
# needs optimisation, so it belongs to the default CFLAGS, not the ASan build).
HARDEN  := -fstack-protector-strong -fPIE
HARDEN_LD := -pie -Wl,-z,relro,-z,now
CFLAGS  ?= -O2 -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3
DEPFLAGS = -MMD -MP
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LIBS    = $(PKG_LIBS) -lpthread

# Modules (DESIGN.md): each folder is one module.
CONF_SRC   := $(wildcard conf/*.c)
QUEUE_SRC  := $(wildcard queue/*.c)
AUTH_SRC   := $(wildcard auth/*.c)
ROUTES_SRC := $(wildcard routes/*.c)
CTL_SRC    := $(wildcard relayd/relayctl*.c)
DAEMON_SRC := $(filter-out relayd/main.c $(CTL_SRC),$(wildcard relayd/*.c))
LIB_SRC    := $(CONF_SRC) $(QUEUE_SRC) $(AUTH_SRC) $(ROUTES_SRC) $(DAEMON_SRC)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)

# Two variants: build/ (optimised) and build/asan/ (ASan+UBSan, what `make test` runs).
B  := build
BA := build/asan
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

# A third, build/fuzz/: clang with libFuzzer's coverage hooks, for tests/fuzz/ (tests/README.md).
BF := build/fuzz
FUZZ_CC  := clang
FUZZ_SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BF)/%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 60

obj   = $(patsubst %.c,$(1)/obj/%.o,$(2))

.PHONY: all run test unit integration bench install clean deps test-deps bench-deps asan \
        unit-plain fuzz fuzz-build
all: $(B)/relayd $(B)/relayctl

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(HARDEN) $(CFLAGS) $(PKG_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BA)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(HARDEN) -O1 $(SAN) $(PKG_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(B)/relayd: $(call obj,$(B),relayd/main.c $(LIB_SRC))
	$(CC) $(CFLAGS) $(HARDEN_LD) -o $@ $^ $(LIBS)
$(B)/relayctl: $(call obj,$(B),$(CTL_SRC) $(LIB_SRC))
	$(CC) $(CFLAGS) $(HARDEN_LD) -o $@ $^ $(LIBS)

# The benchmark's queue builder: the queue/ module alone, optimised like build/relayd.
$(B)/bench/queue_fill: $(call obj,$(B),tests/bench/queue_fill.c $(QUEUE_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(HARDEN_LD) -o $@ $^ $(LIBS)

$(BA)/relayd: $(call obj,$(BA),relayd/main.c $(LIB_SRC))
	$(CC) $(SAN) $(HARDEN_LD) -o $@ $^ $(LIBS)
$(BA)/relayctl: $(call obj,$(BA),$(CTL_SRC) $(LIB_SRC))
	$(CC) $(SAN) $(HARDEN_LD) -o $@ $^ $(LIBS)
$(BA)/tests/%: $(BA)/obj/tests/unit/%.o $(call obj,$(BA),$(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(SAN) $(HARDEN_LD) -o $@ $^ $(LIBS)

$(BF)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS_BASE) -O1 -fsanitize=fuzzer-no-link $(FUZZ_SAN) $(PKG_CFLAGS) $(DEPFLAGS) -c $< -o $@
$(BF)/fuzz_%: $(BF)/obj/tests/fuzz/fuzz_%.o $(call obj,$(BF),$(LIB_SRC))
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LIBS) $(FUZZ_LDFLAGS)
# The config target confines the files a config names to its scratch directory.
$(BF)/fuzz_conf: FUZZ_LDFLAGS := -Wl,--wrap=fopen

asan: $(BA)/relayd $(BA)/relayctl $(patsubst tests/unit/%.c,$(BA)/tests/%,$(UNIT_SRC))

# The unit tests without sanitizers, for valgrind (tests/lint runs them under it).
$(B)/tests/%: $(B)/obj/tests/unit/%.o $(call obj,$(B),$(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(HARDEN_LD) -o $@ $^ $(LIBS)
unit-plain: $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))

# `make run`: everything a fresh Debian 12 needs, then relayd in the foreground on 127.0.0.1:2525.
run: deps all
	@mkdir -p var
	./$(B)/relayd -d -c conf/relayd.local.conf

fuzz-build: $(FUZZ_BIN)

# `make test`: the test peers, the sanitizer builds, every unit and integration test, and
# each fuzz target briefly over its corpus.
test: deps test-deps asan all unit-plain fuzz-build
	RELAYD=$(BA)/relayd RELAYCTL=$(BA)/relayctl TESTBIN=$(BA)/tests RELEASE=$(B)/relayd \
	    PLAIN_TESTBIN=$(B)/tests FUZZBIN=$(BF) tests/run

# `make fuzz`: each target for FUZZ_SECONDS; new inputs stay in build/fuzz/corpus/.
fuzz: deps test-deps fuzz-build
	FUZZBIN=$(BF) tests/fuzz/run fuzz $(FUZZ_SECONDS)

# `make bench`: the optimised build against a stock Postfix relay, as root, about 10 minutes;
# prints one table and writes tests/bench/RESULTS.md.  QUICK=1: fewer, shorter rows (development);
# BENCH_FLAGS: more options of tests/bench/run.py (--repeat 3, --only queue, …; see its --help).
# Not a test: `make test` times nothing.
bench: deps bench-deps all $(B)/bench/queue_fill
	/usr/bin/python3 tests/bench/run.py $(if $(QUICK),--quick) $(BENCH_FLAGS)

deps:
	@missing=""; for p in $(DEB_BUILD_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; fi

test-deps:
	@missing=""; for p in $(DEB_TEST_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; fi

bench-deps:
	@missing=""; for p in $(DEB_BENCH_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; fi

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/etc/relayd \
	           $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5 \
	           $(DESTDIR)$(PREFIX)/share/relayd
	install -m 0755 $(B)/relayd $(B)/relayctl $(DESTDIR)$(PREFIX)/sbin/
	install -m 0644 relayd.conf.sample $(DESTDIR)$(PREFIX)/etc/relayd/
	install -m 0644 man/relayd.8 man/relayctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 man/relayd.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 0644 conf/relayd.service conf/relayd.logrotate $(DESTDIR)$(PREFIX)/share/relayd/

clean:
	rm -rf build

# Keep objects of the pattern rules: removing them would print after the test summary.
.SECONDARY:

-include $(shell find build -name '*.d' 2>/dev/null)
