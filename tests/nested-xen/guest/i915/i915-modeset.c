/* i915-modeset: put a picture on the vGPU's primary plane without fbcon. Finds the first
 * connected connector, its preferred (first) mode and a CRTC its encoder can drive, creates
 * a dumb buffer, draws eight vertical colour bars over a white/black checker strip, and
 * sets the mode with it (DRM_IOCTL_MODE_SETCRTC). The dumb buffer is mmap'ed through
 * MAP_DUMB, which on i915 with PAT is a write-combined CPU map of the object's own pages:
 * the drawing lands in guest RAM, not in the trapped aperture. Prints
 * "GUEST-MODESET result=ok|fail ..." and, on success, sleeps argv[2] seconds with the mode
 * set (closing the fd would let fbdev-less i915 turn the CRTC off again).
 * Static, no libdrm: the uAPI structs follow include/uapi/drm/drm_mode.h (Linux 6.1).
 * Build: gcc -static -O2 -Wall -o i915-modeset i915-modeset.c
 * Usage: i915-modeset [/dev/dri/card0] [hold_seconds] */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct card_res { uint64_t fb_id_ptr, crtc_id_ptr, connector_id_ptr, encoder_id_ptr;
                  uint32_t count_fbs, count_crtcs, count_connectors, count_encoders;
                  uint32_t min_width, max_width, min_height, max_height; };
struct modeinfo { uint32_t clock; uint16_t hdisplay, hsync_start, hsync_end, htotal, hskew;
                  uint16_t vdisplay, vsync_start, vsync_end, vtotal, vscan; uint32_t vrefresh, flags, type; char name[32]; };
struct get_connector { uint64_t encoders_ptr, modes_ptr, props_ptr, prop_values_ptr;
                       uint32_t count_modes, count_props, count_encoders, encoder_id, connector_id,
                       connector_type, connector_type_id, connection, mm_width, mm_height, subpixel, pad; };
struct get_encoder { uint32_t encoder_id, encoder_type, crtc_id, possible_crtcs, possible_clones; };
struct create_dumb { uint32_t height, width, bpp, flags, handle, pitch; uint64_t size; };
struct map_dumb { uint32_t handle, pad; uint64_t offset; };
struct fb_cmd { uint32_t fb_id, width, height, pitch, bpp, depth, handle; };
struct mode_crtc { uint64_t set_connectors_ptr; uint32_t count_connectors, crtc_id, fb_id, x, y, gamma_size, mode_valid; struct modeinfo mode; };
#define IOCTL_GETRESOURCES _IOWR('d', 0xA0, struct card_res)
#define IOCTL_SETCRTC _IOWR('d', 0xA2, struct mode_crtc)
#define IOCTL_GETENCODER _IOWR('d', 0xA6, struct get_encoder)
#define IOCTL_GETCONNECTOR _IOWR('d', 0xA7, struct get_connector)
#define IOCTL_ADDFB _IOWR('d', 0xAE, struct fb_cmd)
#define IOCTL_CREATE_DUMB _IOWR('d', 0xB2, struct create_dumb)
#define IOCTL_MAP_DUMB _IOWR('d', 0xB3, struct map_dumb)
#define CONNECTED 1

static int fail(const char *what)
{
    printf("GUEST-MODESET result=fail step=%s errno=%d (%s)\n", what, errno, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    const char *dev = argc > 1 ? argv[1] : "/dev/dri/card0";
    int hold = argc > 2 ? atoi(argv[2]) : 60;
    int fd = open(dev, O_RDWR);
    if (fd < 0) return fail("open");
    uint32_t crtcs[8], conns[16], encs[16];
    struct card_res res = { 0 };
    if (ioctl(fd, IOCTL_GETRESOURCES, &res)) return fail("getresources");
    if (res.count_crtcs > 8 || res.count_connectors > 16 || res.count_encoders > 16) { errno = E2BIG; return fail("too_many"); }
    res.count_fbs = 0;
    res.crtc_id_ptr = (uintptr_t)crtcs; res.connector_id_ptr = (uintptr_t)conns; res.encoder_id_ptr = (uintptr_t)encs;
    if (ioctl(fd, IOCTL_GETRESOURCES, &res)) return fail("getresources2");
    for (uint32_t c = 0; c < res.count_connectors; c++) {
        struct modeinfo modes[64]; uint32_t cencs[16];
        struct get_connector gc = { .connector_id = conns[c] };
        if (ioctl(fd, IOCTL_GETCONNECTOR, &gc)) continue;            /* count pass (also probes) */
        printf("GUEST-CONNECTOR-PROBE id=%u type=%u connection=%u modes=%u\n", conns[c], gc.connector_type, gc.connection, gc.count_modes);
        if (gc.connection != CONNECTED || gc.count_modes == 0) continue;
        uint32_t nm = gc.count_modes > 64 ? 64 : gc.count_modes, ne = gc.count_encoders > 16 ? 16 : gc.count_encoders;
        struct get_connector g2 = { .connector_id = conns[c], .count_modes = nm, .modes_ptr = (uintptr_t)modes,
                                    .count_encoders = ne, .encoders_ptr = (uintptr_t)cencs };
        if (ioctl(fd, IOCTL_GETCONNECTOR, &g2)) return fail("getconnector");
        struct modeinfo m = modes[0];
        uint32_t crtc = 0;
        for (uint32_t e = 0; e < ne && !crtc; e++) {
            struct get_encoder ge = { .encoder_id = cencs[e] };
            if (ioctl(fd, IOCTL_GETENCODER, &ge)) continue;
            for (uint32_t i = 0; i < res.count_crtcs; i++)
                if (ge.possible_crtcs & (1u << i)) { crtc = crtcs[i]; break; }
        }
        if (!crtc) { errno = ENODEV; return fail("no_crtc"); }
        struct create_dumb cd = { .width = m.hdisplay, .height = m.vdisplay, .bpp = 32 };
        if (ioctl(fd, IOCTL_CREATE_DUMB, &cd)) return fail("create_dumb");
        struct fb_cmd fb = { .width = cd.width, .height = cd.height, .pitch = cd.pitch, .bpp = 32, .depth = 24, .handle = cd.handle };
        if (ioctl(fd, IOCTL_ADDFB, &fb)) return fail("addfb");
        struct map_dumb md = { .handle = cd.handle };
        if (ioctl(fd, IOCTL_MAP_DUMB, &md)) return fail("map_dumb");
        uint8_t *px = mmap(0, cd.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, md.offset);
        if (px == MAP_FAILED) return fail("mmap");
        static const uint32_t bars[8] = { 0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000 };
        for (uint32_t y = 0; y < cd.height; y++) {
            uint32_t *row = (uint32_t *)(px + (uint64_t)y * cd.pitch);
            for (uint32_t x = 0; x < cd.width; x++)
                row[x] = y < cd.height * 3 / 4 ? bars[x * 8 / cd.width]
                                               : (((x / 32) ^ (y / 32)) & 1 ? 0xffffff : 0x202020);
        }
        struct mode_crtc sc = { .set_connectors_ptr = (uintptr_t)&conns[c], .count_connectors = 1, .crtc_id = crtc,
                                .fb_id = fb.fb_id, .mode_valid = 1, .mode = m };
        if (ioctl(fd, IOCTL_SETCRTC, &sc)) return fail("setcrtc");
        printf("GUEST-MODESET result=ok connector=%u crtc=%u mode=%s %ux%u@%u fb=%u pitch=%u\n", conns[c], crtc, m.name,
               m.hdisplay, m.vdisplay, m.vrefresh, fb.fb_id, cd.pitch);
        fflush(stdout);
        sleep(hold);
        return 0;
    }
    errno = ENODEV;
    return fail("no_connected_connector");
}
