#ifndef CLZ4_SHIM_H
#define CLZ4_SHIM_H
#include <lz4frame.h>

/* LZ4F_VERSION is a macro; Swift needs a function. */
static inline unsigned clz4_frame_version(void) { return LZ4F_VERSION; }
#endif
