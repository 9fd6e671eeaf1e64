#include <lzma.h>

/* LZMA_CONCATENATED is a macro built from UINT32_C, which Swift does not import. */
static inline uint32_t multipack_lzma_concatenated(void) { return LZMA_CONCATENATED; }
