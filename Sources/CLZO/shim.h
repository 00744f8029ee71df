#ifndef CLZO_SHIM_H
#define CLZO_SHIM_H
#include <lzo/lzo1x.h>

/* lzo_init and the work-memory size are macros; Swift needs functions. */
static inline int clzo_init(void) { return lzo_init(); }
static inline unsigned long clzo1x_1_work_memory_size(void) { return LZO1X_1_MEM_COMPRESS; }
#endif
