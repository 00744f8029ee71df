#ifndef CLZMA_SHIM_H
#define CLZMA_SHIM_H
#include <lzma.h>

/* The decoder flags are macros built with UINT32_C, which Swift does not import. */
static inline uint32_t clzma_concatenated(void) { return LZMA_CONCATENATED; }
#endif
