#include <zlib.h>

/* inflateInit2 and deflateInit2 are macros that pass the library version and the struct size;
   Swift cannot call macros, so these wrappers do it for us. */
static inline int multipack_inflateInit2(z_streamp stream, int windowBits) {
    return inflateInit2(stream, windowBits);
}

static inline int multipack_deflateInit2(z_streamp stream, int level, int windowBits) {
    return deflateInit2(stream, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY);
}
