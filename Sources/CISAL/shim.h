// Intel's ISA-L from Debian's libisal-dev: the zip CRC-32 (crc32_gzip_refl) with
// carry-less multiplication, several times zlib's speed.
#include <isa-l/crc.h>
