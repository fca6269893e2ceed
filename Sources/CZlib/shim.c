#include "czlib.h"
int sb_deflate_init(z_stream *strm, int level, int window_bits, int mem_level) {
    return deflateInit2(strm, level, Z_DEFLATED, window_bits, mem_level, Z_DEFAULT_STRATEGY);
}
int sb_inflate_init(z_stream *strm, int window_bits) {
    return inflateInit2(strm, window_bits);
}
