# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""blosc1 frames of coverage chunks, written as c-blosc 1.21 writes them but for one byte per
block: the encoder of `codec.ChunkEncoder`.

Why not numcodecs' Blosc: with the 16 KiB blocks that random windows need (format 3), c-blosc
took 11.8 ms per 1 Mi-position chunk of the bench BAM's coverage, against 7.3 ms with 128 KiB
blocks and 7.4 ms for libzstd's own calls on the same 16 KiB blocks with one context kept
(measured by hand on 6 chunks; `make bench` row "extract time vs the baseline's" is the
end-to-end check). Here one zstd context per encoder lives as long as the encoder: 7.8 ms.

The frame is c-blosc's, field by field (blosc.c: write_compression_header, serial_blosc,
blosc_c, zstd_wrap_compress), so every blosc reader decodes it (zarr, numcodecs, QuantNado,
`_chunkread`):
- header: version 2, zstd format version 1, flags (byte shuffle 0x1, no split 0x10, zstd 4 << 5,
  memcpyed 0x2), typesize 4, then nbytes, blocksize and the frame's size as little-endian int32;
- frames of fewer than 128 bytes, and frames that would not fit in nbytes + 16 bytes, are stored
  as they are (memcpyed), after the header;
- otherwise one int32 offset per block, then per block an int32 length and its byte-shuffled
  bytes compressed by zstd at blosc's level (2 x clevel - 1), or the shuffled bytes as they are
  (length = block size) when zstd cannot make them smaller.
The one difference: each block's zstd frame leaves out its content size (c-blosc writes it), a
byte per block, 256 per 1 Mi-position chunk, which keeps the store of 16 KiB blocks no larger
than QuantNado's of 128 KiB blocks (`make bench`, core target 5). Every blosc reader decodes
such frames: zstd's one-shot decoder sizes its output by the capacity it is given, which blosc
knows from its header. The zstd bytes after the frame header equal c-blosc's when libzstd is
the version numcodecs bundles; the tests decode every frame through numcodecs and zarr.
"""

from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef extern from *:
    """
    /* libzstd's stable API (zstd.h, v1.0 on), declared here so that the build needs only the
       runtime library (libzstd.so.1) and not its development headers. */
    #include <stddef.h>
    typedef struct ZSTD_CCtx_s ZSTD_CCtx;
    ZSTD_CCtx* ZSTD_createCCtx(void);
    size_t ZSTD_freeCCtx(ZSTD_CCtx* cctx);
    /* the advanced API (v1.4.0 on) */
    typedef enum { ZSTD_c_compressionLevel = 100, ZSTD_c_contentSizeFlag = 200 } ZSTD_cParameter;
    size_t ZSTD_CCtx_setParameter(ZSTD_CCtx* cctx, ZSTD_cParameter param, int value);
    size_t ZSTD_compress2(ZSTD_CCtx* cctx, void* dst, size_t dstCapacity,
                          const void* src, size_t srcSize);
    unsigned ZSTD_isError(size_t code);
    int ZSTD_maxCLevel(void);
    """
    ctypedef struct ZSTD_CCtx
    ZSTD_CCtx* ZSTD_createCCtx() nogil
    size_t ZSTD_freeCCtx(ZSTD_CCtx* cctx) nogil
    ctypedef enum ZSTD_cParameter:
        ZSTD_c_compressionLevel
        ZSTD_c_contentSizeFlag
    size_t ZSTD_CCtx_setParameter(ZSTD_CCtx* cctx, ZSTD_cParameter param, int value) nogil
    size_t ZSTD_compress2(ZSTD_CCtx* cctx, void* dst, size_t cap, const void* src,
                          size_t size) nogil
    unsigned ZSTD_isError(size_t code) nogil
    int ZSTD_maxCLevel() nogil

cdef int64_t OVERHEAD = 16  # BLOSC_MAX_OVERHEAD: the header
cdef int64_t MIN_BUFFERSIZE = 128  # smaller frames are stored as they are
cdef int64_t MAX_BLOCKSIZE = 536866816  # BLOSC_MAX_BLOCKSIZE
cdef int ITEM = 4  # bytes per position (uint32)
cdef uint8_t FLAGS = 0x1 | 0x10 | (4 << 5)  # shuffle, no split, zstd
cdef uint8_t MEMCPYED = 0x2


cdef inline void put_i32(uint8_t *p, int64_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline void shuffle4(const uint8_t *src, int64_t n, uint8_t *dest) noexcept nogil:
    """Byte planes of n bytes of 4-byte items: byte 0 of every item, then byte 1, ..."""
    cdef int64_t items = n // ITEM
    cdef int64_t i
    for i in range(items):
        dest[i] = src[4 * i]
        dest[items + i] = src[4 * i + 1]
        dest[2 * items + i] = src[4 * i + 2]
        dest[3 * items + i] = src[4 * i + 3]


cdef int64_t block_size(int64_t nbytes, int64_t forced) noexcept nogil:
    """blosc's compute_blocksize with a forced block size."""
    cdef int64_t bs
    if nbytes < ITEM:
        return 1
    bs = forced
    if bs < MIN_BUFFERSIZE:
        bs = MIN_BUFFERSIZE
    if bs > MAX_BLOCKSIZE:
        bs = MAX_BLOCKSIZE
    if bs > nbytes:
        bs = nbytes
    if bs > ITEM:
        bs = bs // ITEM * ITEM
    return bs


cdef int64_t compressed_blocks(const uint8_t *src, int64_t nbytes, int64_t blocksize,
                               uint8_t *dest, uint8_t *tmp,
                               ZSTD_CCtx *ctx) noexcept nogil:
    """serial_blosc + blosc_c: the frame's size with its blocks written after the header, or
    0 when they do not fit in nbytes + 16 bytes (the frame is then stored as it is)."""
    cdef int64_t maxbytes = nbytes + OVERHEAD
    cdef int64_t nblocks = nbytes // blocksize
    cdef int64_t leftover = nbytes % blocksize
    cdef int64_t ntbytes, bsize, maxout, j
    cdef size_t cbytes
    if leftover:
        nblocks += 1
    ntbytes = OVERHEAD + ITEM * nblocks
    if ntbytes > maxbytes:
        return 0
    for j in range(nblocks):
        put_i32(dest + OVERHEAD + ITEM * j, ntbytes)
        bsize = leftover if (j == nblocks - 1 and leftover) else blocksize
        shuffle4(src + j * blocksize, bsize, tmp)
        ntbytes += 4
        maxout = bsize
        if ntbytes + maxout > maxbytes:
            maxout = maxbytes - ntbytes
            if maxout <= 0:
                return 0
        cbytes = ZSTD_compress2(ctx, dest + ntbytes, maxout, tmp, bsize)
        if ZSTD_isError(cbytes):
            cbytes = 0  # zstd_wrap_compress: an error (the output did not fit) is 0
        if cbytes == 0 or <int64_t>cbytes == bsize:
            if ntbytes + bsize > maxbytes:
                return 0
            memcpy(dest + ntbytes, tmp, bsize)
            cbytes = bsize
        put_i32(dest + ntbytes - 4, cbytes)
        ntbytes += cbytes
    return ntbytes


cdef class FrameEncoder:
    """Encodes uint32 chunks into blosc1 frames (zstd, byte shuffle) with one zstd context.

    Not thread-safe: one encoder per thread (`codec.ChunkEncoder` keeps one per thread).
    """

    cdef ZSTD_CCtx *ctx
    cdef readonly int clevel
    cdef readonly int zstd_level
    cdef readonly int64_t blocksize

    def __cinit__(self, int clevel, int64_t blocksize):
        if not 1 <= clevel <= 9:
            raise ValueError(f"blosc clevel must be 1..9, not {clevel}")
        self.clevel = clevel
        # zstd_wrap_compress: blosc's level 1..8 is zstd's 2c - 1, 9 its maximum
        self.zstd_level = clevel * 2 - 1 if clevel < 9 else ZSTD_maxCLevel()
        self.blocksize = blocksize
        self.ctx = ZSTD_createCCtx()
        if self.ctx == NULL:
            raise MemoryError("ZSTD_createCCtx failed")
        # no content size in the zstd frame headers: a block's size is in blosc's header
        # already, and every zstd decoder takes a frame without it (ZSTD_decompressDCtx sizes
        # its output by the capacity it is given). One byte less per block, 256 per chunk.
        for param, value in ((ZSTD_c_compressionLevel, self.zstd_level),
                             (ZSTD_c_contentSizeFlag, 0)):
            if ZSTD_isError(ZSTD_CCtx_setParameter(self.ctx, param, value)):
                raise ValueError(f"libzstd refused parameter {param} = {value}")

    def __dealloc__(self):
        if self.ctx != NULL:
            ZSTD_freeCCtx(self.ctx)

    def encode(self, const uint8_t[::1] data) -> bytes:
        """The blosc1 frame of `data`: the little-endian bytes of a uint32 chunk."""
        cdef int64_t nbytes = data.shape[0]
        cdef int64_t bs = block_size(nbytes, self.blocksize)
        cdef int64_t ntbytes = 0
        cdef uint8_t flags = FLAGS
        cdef bytearray out = bytearray(nbytes + OVERHEAD)
        cdef uint8_t *dest = out
        cdef uint8_t *tmp = NULL
        cdef const uint8_t *src = &data[0] if nbytes else NULL
        if nbytes % ITEM:
            raise ValueError(f"a chunk of uint32 has a multiple of 4 bytes, not {nbytes}")
        if nbytes >= MIN_BUFFERSIZE:
            tmp = <uint8_t *>malloc(bs)
            if tmp == NULL:
                raise MemoryError()
            with nogil:
                ntbytes = compressed_blocks(
                    src, nbytes, bs, dest, tmp, self.ctx
                )
            free(tmp)
        if ntbytes == 0:  # stored as it is, after the header
            flags |= MEMCPYED
            if nbytes:
                memcpy(dest + OVERHEAD, src, nbytes)
            ntbytes = OVERHEAD + nbytes
        dest[0] = 2  # BLOSC_VERSION_FORMAT
        dest[1] = 1  # BLOSC_ZSTD_VERSION_FORMAT
        dest[2] = flags
        dest[3] = ITEM
        put_i32(dest + 4, nbytes)
        put_i32(dest + 8, bs)
        put_i32(dest + 12, ntbytes)
        return bytes(out[:ntbytes])
