/* i915-store: the smallest GPU workload through the i915 uAPI. Creates a target and a
 * batch buffer object, writes a batch of MI_STORE_DWORD_IMM (target, relocated by the
 * kernel) + MI_BATCH_BUFFER_END, submits it with EXECBUFFER2 on the given ring, waits,
 * and reads the target back with PREAD. Prints "GUEST-STORE result=ok|fail ..." and
 * exits 0 only if the value landed. Static, no libdrm: the uAPI structs are spelled out
 * here (include/uapi/drm/i915_drm.h, Linux 6.1).
 * Build: gcc -static -O2 -Wall -o i915-store i915-store.c
 * Usage: i915-store [/dev/dri/card0] [ring: 1=render 3=blt] */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct gem_create { uint64_t size; uint32_t handle, pad; };
struct gem_rw { uint32_t handle, pad; uint64_t offset, size, data_ptr; };
struct gem_wait { uint32_t bo_handle, flags; int64_t timeout_ns; };
struct gem_close { uint32_t handle, pad; };
struct reloc { uint32_t target_handle, delta; uint64_t offset, presumed_offset; uint32_t read_domains, write_domain; };
struct exec_obj2 { uint32_t handle, relocation_count; uint64_t relocs_ptr, alignment, offset, flags, rsvd1, rsvd2; };
struct execbuf2 {
    uint64_t buffers_ptr; uint32_t buffer_count, batch_start_offset, batch_len, DR1, DR4, num_cliprects;
    uint64_t cliprects_ptr, flags, rsvd1, rsvd2;
};
#define DRM_CMD(n) (0x40 + (n))
#define IOCTL_GEM_CREATE _IOWR('d', DRM_CMD(0x1b), struct gem_create)
#define IOCTL_GEM_PREAD _IOW('d', DRM_CMD(0x1c), struct gem_rw)
#define IOCTL_GEM_PWRITE _IOW('d', DRM_CMD(0x1d), struct gem_rw)
#define IOCTL_GEM_EXECBUFFER2 _IOW('d', DRM_CMD(0x29), struct execbuf2)
#define IOCTL_GEM_WAIT _IOWR('d', DRM_CMD(0x2c), struct gem_wait)
#define IOCTL_GEM_CLOSE _IOW('d', 0x09, struct gem_close)
#define DOMAIN_RENDER 0x2u
#define MI_STORE_DWORD_IMM_GEN8 ((0x20u << 23) | 2u) /* 4 dwords: header, addr lo, addr hi, value */
#define MI_BATCH_BUFFER_END (0x0au << 23)
#define MAGIC 0xc0ffee42u

static int fail(const char *what)
{
    printf("GUEST-STORE result=fail step=%s errno=%d (%s)\n", what, errno, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    const char *dev = argc > 1 ? argv[1] : "/dev/dri/card0";
    unsigned ring = argc > 2 ? (unsigned)atoi(argv[2]) : 1;
    int fd = open(dev, O_RDWR);
    if (fd < 0) return fail("open");
    struct gem_create tgt = { .size = 4096 }, bb = { .size = 4096 };
    if (ioctl(fd, IOCTL_GEM_CREATE, &tgt) || ioctl(fd, IOCTL_GEM_CREATE, &bb)) return fail("gem_create");
    uint32_t zero[4] = { 0 };
    struct gem_rw clr = { .handle = tgt.handle, .size = sizeof zero, .data_ptr = (uintptr_t)zero };
    if (ioctl(fd, IOCTL_GEM_PWRITE, &clr)) return fail("pwrite_target");
    uint32_t batch[8] = { MI_STORE_DWORD_IMM_GEN8, 0, 0, MAGIC, MI_BATCH_BUFFER_END, 0, 0, 0 };
    struct gem_rw w = { .handle = bb.handle, .size = sizeof batch, .data_ptr = (uintptr_t)batch };
    if (ioctl(fd, IOCTL_GEM_PWRITE, &w)) return fail("pwrite_batch");
    struct reloc r = { .target_handle = tgt.handle, .delta = 0, .offset = 4, .presumed_offset = ~0ull,
                       .read_domains = DOMAIN_RENDER, .write_domain = DOMAIN_RENDER };
    struct exec_obj2 objs[2] = {
        { .handle = tgt.handle },
        { .handle = bb.handle, .relocation_count = 1, .relocs_ptr = (uintptr_t)&r },
    };
    struct execbuf2 eb = { .buffers_ptr = (uintptr_t)objs, .buffer_count = 2, .batch_len = sizeof batch, .flags = ring };
    if (ioctl(fd, IOCTL_GEM_EXECBUFFER2, &eb)) return fail("execbuffer2");
    struct gem_wait wt = { .bo_handle = tgt.handle, .timeout_ns = 20LL * 1000 * 1000 * 1000 };
    if (ioctl(fd, IOCTL_GEM_WAIT, &wt)) return fail("gem_wait");
    uint32_t got = 0;
    struct gem_rw rd = { .handle = tgt.handle, .size = 4, .data_ptr = (uintptr_t)&got };
    if (ioctl(fd, IOCTL_GEM_PREAD, &rd)) return fail("pread");
    printf("GUEST-STORE result=%s ring=%u value=0x%08x want=0x%08x gtt_offset=0x%llx\n", got == MAGIC ? "ok" : "fail",
           ring, got, MAGIC, (unsigned long long)objs[0].offset);
    return got == MAGIC ? 0 : 1;
}
