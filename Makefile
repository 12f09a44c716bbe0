# SPDX-License-Identifier: GPL-2.0
#
# The modules without cargo, the chapter's way: against any Rust-enabled kernel build tree.
#
#   make                                    # KDIR=/lib/modules/$(uname -r)/build
#   make KDIR=/path/to/kernel/build/dir     # e.g. the O= dir of a kernel you built
#   make clean
#
# Builds modules/ and modules-c/ with `make -C $(KDIR) M=<dir>`; the objects go to
# $(OUT)/<dir> (Kbuild's MO=), so the source tree stays clean. `cargo xtask doctor --kdir DIR`
# says what a tree lacks when this fails (no CONFIG_RUST, no rust/*.rmeta in distro headers).
#
# The compilers follow the tree (override on the command line as usual):
#   LLVM   = -N when the tree was built with clang N and clang-N is installed, else 1;
#            unset for a GCC-built tree.
#   RUSTC  = the first of `rustc`, /usr/bin/rustc whose --version is the tree's
#            CONFIG_RUSTC_VERSION_TEXT (its .rmeta files load only into that compiler).

KDIR ?= /lib/modules/$(shell uname -r)/build
OUT ?= $(CURDIR)/target/make
DIRS := $(patsubst %/Kbuild,%,$(wildcard modules/Kbuild modules-c/Kbuild))

AUTOCONF := $(KDIR)/include/config/auto.conf
tree_cfg = $(shell sed -n 's/^$(1)=//p' $(AUTOCONF) 2>/dev/null)

ifeq ($(origin LLVM),undefined)
  ifeq ($(call tree_cfg,CONFIG_CC_IS_CLANG),y)
    CLANG_MAJOR := $(shell expr $(call tree_cfg,CONFIG_CLANG_VERSION) / 10000 2>/dev/null)
    LLVM := $(if $(shell command -v clang-$(CLANG_MAJOR)),-$(CLANG_MAJOR),1)
  endif
endif

ifeq ($(origin RUSTC),undefined)
  TREE_RUSTC := $(subst ",,$(call tree_cfg,CONFIG_RUSTC_VERSION_TEXT))
  RUSTC := $(shell for r in rustc /usr/bin/rustc; do \
             [ "$$($$r --version 2>/dev/null)" = '$(TREE_RUSTC)' ] && { echo $$r; exit; }; \
           done; echo rustc)
endif

KMAKE = $(MAKE) -C $(KDIR) $(if $(LLVM),LLVM=$(LLVM)) RUSTC=$(RUSTC)

.PHONY: all modules clean check-kdir

all: modules

check-kdir:
	@test -f $(KDIR)/Makefile || { \
	  echo "No kernel build tree at $(KDIR): pass KDIR=DIR (or install the headers of"; \
	  echo "the running kernel). cargo xtask doctor --kdir DIR checks a tree."; exit 1; }

modules: check-kdir
	@set -e; for d in $(DIRS); do \
	  mkdir -p $(OUT)/$$d; \
	  echo "== make -C $(KDIR) M=$(CURDIR)/$$d MO=$(OUT)/$$d"; \
	  $(KMAKE) M=$(CURDIR)/$$d MO=$(OUT)/$$d modules; \
	done
	@find $(OUT) -name '*.ko' | sort

clean:
	rm -rf $(OUT)
