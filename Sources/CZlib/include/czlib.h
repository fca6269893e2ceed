#ifndef SWITCHBOARD_CZLIB_H
#define SWITCHBOARD_CZLIB_H
#include <zlib.h>
// deflateInit2/inflateInit2 are function-like macros Swift cannot call.
int sb_deflate_init(z_stream *strm, int level, int window_bits, int mem_level);
int sb_inflate_init(z_stream *strm, int window_bits);
#endif
