/*
 * fakexen.so — LD_PRELOAD shim that lets Debian 12's real cxenstored
 * (/usr/lib/xen-4.17/bin/xenstored) run on a machine without a hypervisor, for the
 * xenstored-real test tier. Adapted from /work/shared/recipes/nested-xen.md §4.
 *
 * cxenstored (without -D) needs: a libxenctrl handle and xc_domain_getinfo() that
 * reports only dom0; libxenevtchn/libxengnttab handles whose calls succeed; and the
 * dom0 ring page/port files /proc/xen/xsd_kva and /proc/xen/xsd_port. The evtchn fd is
 * a pipe that never becomes readable, so the (fake) dom0 ring is never serviced; every
 * client talks over the Unix socket and is treated as dom0 (privileged). Per-domain
 * permission checks therefore cannot be exercised here (use the nested-Xen tier).
 *
 * Tied to Xen 4.17 cxenstored internals. Build:
 *   gcc -shared -fPIC -O2 -o fakexen.so fakexen.c -ldl     (needs libxen-dev)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <xenctrl.h>

static int dummy;
static int pipefd[2] = {-1, -1};

xc_interface *xc_interface_open(xentoollog_logger *a, xentoollog_logger *b, unsigned f)
{ (void)a; (void)b; (void)f; return (xc_interface *)&dummy; }
int xc_interface_close(xc_interface *x) { (void)x; return 0; }

/* Only dom0 exists. */
int xc_domain_getinfo(xc_interface *x, uint32_t first, unsigned int max, xc_dominfo_t *info)
{
    (void)x;
    if (first != 0 || max < 1)
        return 0;
    memset(info, 0, sizeof(*info));
    info->domid = 0;
    info->running = 1;
    return 1;
}

void *xengnttab_open(void *l, unsigned f) { (void)l; (void)f; return &dummy; }
int xengnttab_close(void *x) { (void)x; return 0; }
int xengnttab_set_max_grants(void *x, uint32_t n) { (void)x; (void)n; return 0; }
void *xengnttab_map_grant_ref(void *x, uint32_t d, uint32_t r, int p)
{ (void)x; (void)d; (void)r; (void)p; return NULL; }
int xengnttab_unmap(void *x, void *a, uint32_t c) { (void)x; (void)a; (void)c; return 0; }

void *xenevtchn_open(void *l, unsigned f)
{
    (void)l; (void)f;
    if (pipefd[0] < 0 && pipe(pipefd))
        return NULL;
    return &dummy;
}
void *xenevtchn_fdopen(void *l, int fd, unsigned f) { (void)fd; return xenevtchn_open(l, f); }
int xenevtchn_fd(void *x) { (void)x; return pipefd[0]; }     /* never readable */
int xenevtchn_bind_virq(void *x, unsigned v) { (void)x; (void)v; return 1; }
int xenevtchn_bind_interdomain(void *x, uint32_t d, uint32_t p)
{ static int n = 10; (void)x; (void)d; (void)p; return n++; }
int xenevtchn_notify(void *x, uint32_t p) { (void)x; (void)p; return 0; }
int xenevtchn_pending(void *x) { (void)x; return -1; }
int xenevtchn_unmask(void *x, uint32_t p) { (void)x; (void)p; return 0; }
int xenevtchn_unbind(void *x, uint32_t p) { (void)x; (void)p; return 0; }

/* dom0's ring page and port come from these files. */
static int fake_path(const char *path)
{
    if (!strcmp(path, "/proc/xen/xsd_port")) {
        int fd = memfd_create("xsd_port", 0);
        if (fd < 0 || write(fd, "1\n", 2) != 2)
            return -1;
        lseek(fd, 0, SEEK_SET);
        return fd;
    }
    if (!strcmp(path, "/proc/xen/xsd_kva")) {
        int fd = memfd_create("xsd_kva", 0);
        if (fd < 0 || ftruncate(fd, 4096))
            return -1;
        return fd;
    }
    return -2;
}

#define WRAP(name)                                                              \
    int name(const char *path, int flags, ...)                                  \
    {                                                                           \
        static int (*real)(const char *, int, ...);                             \
        mode_t mode = 0;                                                        \
        va_list ap;                                                             \
        va_start(ap, flags);                                                    \
        if (flags & O_CREAT)                                                    \
            mode = va_arg(ap, mode_t);                                          \
        va_end(ap);                                                             \
        int fd = fake_path(path);                                               \
        if (fd != -2)                                                           \
            return fd;                                                          \
        if (!real)                                                              \
            real = dlsym(RTLD_NEXT, #name);                                     \
        return real(path, flags, mode);                                         \
    }

WRAP(open)
WRAP(open64)
