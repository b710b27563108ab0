# Build and install xengt the way Debian lays a daemon out.
#
#   make                      release build of xengtd and xengt-ctl
#   make install              install into $(DESTDIR) (default prefix /usr, config /etc)
#   make deb                  target/debian/xengt_<version>_<arch>.deb (dpkg-deb, no cargo-deb)
#   make uninstall            remove what install put there (the config is kept)
#
# `install` never overwrites an existing /etc/xengt/xengtd.json (the operator's file).

PREFIX      ?= /usr
SBINDIR     ?= $(PREFIX)/sbin
BINDIR      ?= $(PREFIX)/bin
SYSCONFDIR  ?= /etc
UNITDIR     ?= /lib/systemd/system
DOCDIR      ?= $(PREFIX)/share/doc/xengt
MANDIR      ?= $(PREFIX)/share/man
EXAMPLEDIR  ?= $(DOCDIR)/examples
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
LIBEXECDIR  ?= $(PREFIX)/libexec/xengt
CARGO       ?= cargo
RELEASE     := target/release
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
ARCH        := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEBROOT     := target/debian/root
DEB         := target/debian/xengt_$(VERSION)_$(ARCH).deb
MANOUT      := target/man

.PHONY: all build man install uninstall deb clean-deb

all: build

build:
	$(CARGO) build --release --locked -p xengt -p xengt-tools

man: build
	rm -rf $(MANOUT) && mkdir -p $(MANOUT)
	$(RELEASE)/xengtd man $(MANOUT)
	$(RELEASE)/xengt-ctl man $(MANOUT)

install: man
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/xengt \
	    $(DESTDIR)$(DOCDIR) $(DESTDIR)$(EXAMPLEDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(RELEASE)/xengtd $(RELEASE)/xengt-ctl $(DESTDIR)$(SBINDIR)/
	install -m 0755 packaging/libexec/qemu-dm-vgt $(DESTDIR)$(LIBEXECDIR)/qemu-dm-vgt
	install -m 0644 configs/xengtd.service $(DESTDIR)$(UNITDIR)/xengtd.service
	test -e $(DESTDIR)$(SYSCONFDIR)/xengt/xengtd.json || \
	    install -m 0644 configs/xengtd.json $(DESTDIR)$(SYSCONFDIR)/xengt/xengtd.json
	install -m 0644 README.md ARCHITECTURE.md configs/config-reference.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 configs/examples/*.cfg configs/xengtd.json $(DESTDIR)$(EXAMPLEDIR)/
	install -m 0644 $(MANOUT)/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(MANOUT)/*.8 $(DESTDIR)$(MANDIR)/man8/
	gzip -9nf $(DESTDIR)$(MANDIR)/man1/xengt-ctl*.1 $(DESTDIR)$(MANDIR)/man8/xengtd*.8
	$(RELEASE)/xengt-ctl completions bash >$(DESTDIR)$(BASHCOMPDIR)/xengt-ctl

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/xengtd $(DESTDIR)$(SBINDIR)/xengt-ctl \
	    $(DESTDIR)$(UNITDIR)/xengtd.service $(DESTDIR)$(BASHCOMPDIR)/xengt-ctl \
	    $(DESTDIR)$(LIBEXECDIR)/qemu-dm-vgt \
	    $(DESTDIR)$(MANDIR)/man1/xengt-ctl*.1.gz $(DESTDIR)$(MANDIR)/man8/xengtd*.8.gz
	rm -rf $(DESTDIR)$(DOCDIR)

# A binary .deb of exactly what `install` lays out; /etc/xengt/xengtd.json is a conffile.
deb: clean-deb
	$(MAKE) install DESTDIR=$(CURDIR)/$(DEBROOT)
	install -d $(DEBROOT)/DEBIAN
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(ARCH)/' \
	    -e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEBROOT) | cut -f1)/" \
	    packaging/debian/control.in >$(DEBROOT)/DEBIAN/control
	install -m 0644 packaging/debian/conffiles $(DEBROOT)/DEBIAN/conffiles
	install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
	    $(DEBROOT)/DEBIAN/
	dpkg-deb --root-owner-group --build $(DEBROOT) $(DEB)
	@echo "built $(DEB)"

clean-deb:
	rm -rf target/debian
