# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Coverage chunks read block by block, without the GIL: the decoding core of `chunks.py`.

Why not numcodecs or zarr: a coverage chunk is one blosc1 frame of up to 1 Mi uint32 positions
(4 MiB) that blosc cuts into blocks (16 KiB in stores written since format 3, 128 KiB before). A
2 kb window needs one or two blocks, but numcodecs decodes only whole frames (it dropped partial
decompression in 0.16) and zarr adds its per-call machinery on top: about 3 ms for a window that
needs 10 us of decoding. Here a window costs one pread and one zstd call per block it touches,
and no Python object per block; the loops run without the GIL, so threads read in parallel.

Read here, and nothing else: blosc1 frames (header version 2) of 4-byte items compressed with
zstd, byte-shuffled or not, split into streams or not; frames that blosc stored uncompressed
(memcpyed); and raw chunks (no compressor: little-endian uint32). `load_frame` reports anything
else as UNSUPPORTED, and the caller decodes that chunk whole through numcodecs (`set_decoded`).
zarr's own reading is the oracle of the tests.

A `ChunkTable` holds what is known of the chunks of one coverage array: for each (row, column)
nothing yet (UNKNOWN), no chunk (ABSENT: zeros), a frame in a file or in memory with the offsets
of its blocks, raw items, or a chunk decoded by the caller. The caller loads entries (it knows the
store's layout: chunk files, shards, URLs); reads happen here. Memory is bounded: `evict` drops
the least recently used entries past `budget` bytes, never while a read is running.
"""

from cpython.pythread cimport (
    WAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset
from posix.fcntl cimport O_RDONLY
from posix.fcntl cimport open as c_open
from posix.unistd cimport close, pread, usleep

from cython.parallel cimport prange, threadid

import numpy as np

cdef extern from *:
    """
    /* libzstd's stable API (zstd.h, v1.0 on), declared here so that the build needs only the
       runtime library (libzstd.so.1) and not its development headers. */
    #include <stddef.h>
    #include <errno.h>
    typedef struct ZSTD_DCtx_s ZSTD_DCtx;
    ZSTD_DCtx* ZSTD_createDCtx(void);
    size_t ZSTD_freeDCtx(ZSTD_DCtx* dctx);
    size_t ZSTD_decompressDCtx(ZSTD_DCtx* dctx, void* dst, size_t dstCapacity,
                               const void* src, size_t srcSize);
    unsigned ZSTD_isError(size_t code);
    static int bamstore_errno(void) { return errno; }
    """
    ctypedef struct ZSTD_DCtx
    ZSTD_DCtx* ZSTD_createDCtx() nogil
    size_t ZSTD_freeDCtx(ZSTD_DCtx* dctx) nogil
    size_t ZSTD_decompressDCtx(ZSTD_DCtx* dctx, void* dst, size_t cap, const void* src,
                               size_t size) nogil
    unsigned ZSTD_isError(size_t code) nogil
    int bamstore_errno() nogil
    int ENOENT

# entry states
cdef enum:
    UNKNOWN = 0
    ABSENT = 1
    RAW = 2
    FRAME = 3
    DECODED = 4

# Results of loads and reads; after a negative one, the Scratch (reads) or the table (loads)
# names the chunk in failed_row / failed_col.
cpdef enum Result:
    OK = 0
    NEED_LOAD = -1  # an entry is UNKNOWN: load it and call again
    MISSING = -2  # the file does not exist
    DAMAGED = -3  # a frame or block cannot be decoded, or a file is shorter than it says
    UNSUPPORTED = -4  # not a frame read here: decode the chunk whole and `set_decoded`
    IO_ERROR = -5  # the file exists but cannot be read (errno in failed_errno)

# reductions of reduce_pieces
cpdef enum Reduction:
    SUM = 0
    MAX = 1
    MIN = 2

cdef int64_t BLOSC_HEADER = 16
cdef int64_t HEAD_GUESS = 4096  # bytes read for a frame's header: the block offsets of up to 1,020 blocks
cdef int BLOSC_SHUFFLE = 0x1
cdef int BLOSC_MEMCPYED = 0x2
cdef int BLOSC_BITSHUFFLE = 0x4
cdef int BLOSC_DONT_SPLIT = 0x10
cdef int BLOSC_ZSTD = 4
cdef int ITEM = 4  # bytes per position (uint32)
cdef int64_t BOUNCE = 65536  # positions per pass when folding raw chunks read from files
# Decoded blocks a reading thread keeps, least recently used replaced first: intervals sorted
# by start that each span fewer blocks decode every block once (a region across a block edge
# and the next one, back in the first block, would otherwise decode it twice), and a reader
# moving along a row (a data loader's neighbouring windows) decodes each block once.
cdef enum:
    SLOTS = 4


cdef struct Entry:
    int32_t state
    int32_t flags
    int32_t nblocks
    int64_t block_bytes
    int64_t nbytes
    int64_t base  # offset of the frame (or of raw items) in its file or buffer
    int64_t *block_start  # offset of each block from `base`
    int64_t *block_end
    const uint8_t *mem  # bytes in memory (owned by the table's `owners`), else NULL
    const uint32_t *decoded  # DECODED: the chunk's values (owned by `owners`)
    char *path  # the file (owned), NULL for memory
    int64_t footprint
    uint64_t last_use
    uint64_t stamp  # when it was loaded: a block decoded from an earlier load is not reused


cdef inline int32_t le_i32(const uint8_t *p) noexcept nogil:
    return <int32_t>(<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
                     | (<uint32_t>p[3] << 24))


cdef inline void unshuffle_range(const uint8_t *src, int64_t n, int64_t lo, int64_t hi,
                                 uint32_t *dest) noexcept nogil:
    """blosc's byte shuffle undone for items [lo, hi) of a block of n 4-byte items: plane j
    holds byte j of every item (a block is a whole number of items: blosc's blocksize is a
    multiple of the typesize). A window reads a few thousand of a block's items."""
    cdef int64_t i
    cdef const uint8_t *p0 = src
    cdef const uint8_t *p1 = src + n
    cdef const uint8_t *p2 = src + 2 * n
    cdef const uint8_t *p3 = src + 3 * n
    for i in range(lo, hi):
        dest[i] = (<uint32_t>p0[i] | (<uint32_t>p1[i] << 8) | (<uint32_t>p2[i] << 16)
                   | (<uint32_t>p3[i] << 24))


cdef int decode_block(const uint8_t *src, int64_t srclen, int32_t flags, int64_t bsize,
                      bint leftover, uint8_t *tmp, uint32_t *dest,
                      ZSTD_DCtx *ctx) noexcept nogil:
    """Decode one blosc1 block (`bsize` bytes decoded): OK or DAMAGED. A block without shuffle
    is decoded into `dest`; a byte-shuffled one is left in `tmp` as its byte planes, which the
    caller unshuffles (`unshuffle_range`) only where it reads.

    As c-blosc's blosc_d: the block is `nsplits` streams (one per item byte when split, else
    one), each an int32 length then zstd data, or the stream's bytes as they are when that length
    equals the stream's decoded size.
    """
    cdef bint shuffled = (flags & BLOSC_SHUFFLE) != 0
    cdef int nsplits = 1 if ((flags & BLOSC_DONT_SPLIT) or leftover) else ITEM
    cdef int64_t neblock = bsize // nsplits
    cdef uint8_t *target = tmp if shuffled else <uint8_t *>dest
    cdef int64_t pos = 0
    cdef int64_t cs
    cdef int j
    cdef size_t got
    for j in range(nsplits):
        if pos + 4 > srclen:
            return DAMAGED
        cs = le_i32(src + pos)
        pos += 4
        if cs < 0 or pos + cs > srclen:
            return DAMAGED
        if cs == neblock:
            memcpy(target + j * neblock, src + pos, neblock)
        else:
            got = ZSTD_decompressDCtx(ctx, target + j * neblock, neblock, src + pos, cs)
            if ZSTD_isError(got) or <int64_t>got != neblock:
                return DAMAGED
        pos += cs
    return OK


cdef inline int64_t fold(int64_t acc, const uint32_t *run, int64_t n, int how) noexcept nogil:
    """acc folded with n values (run NULL: n zeros)."""
    cdef int64_t j
    cdef uint32_t v
    if run == NULL:
        if how == MIN:
            return 0
        return acc  # a sum or maximum (>= 0) is unchanged by zeros
    if how == SUM:
        for j in range(n):
            acc += run[j]
    elif how == MAX:
        for j in range(n):
            v = run[j]
            if v > acc:
                acc = v
    else:
        for j in range(n):
            v = run[j]
            if v < acc:
                acc = v
    return acc


cdef struct Buf:
    # what one reading thread holds: buffers, a zstd context, an open file, decoded blocks
    uint8_t *cbuf
    int64_t cbuf_len
    uint32_t *bounce
    ZSTD_DCtx *ctx
    # SLOTS decoded blocks: the byte planes (`planes`) of a shuffled block are unshuffled into
    # `data` only where read ([lo, hi) items), as a window reads a few thousand of them
    int64_t slot_len
    uint8_t *planes[SLOTS]
    uint32_t *data[SLOTS]
    const Entry *slot_entry[SLOTS]
    uint64_t slot_stamp[SLOTS]
    int64_t slot_k[SLOTS]
    int64_t slot_items[SLOTS]
    int64_t slot_lo[SLOTS]
    int64_t slot_hi[SLOTS]
    bint slot_shuffled[SLOTS]
    uint64_t slot_used[SLOTS]
    uint64_t tick
    # the file of the last read: the blocks of one chunk open it once
    int fd
    const char *fd_path
    int64_t failed_row, failed_col, failed_errno
    int64_t blocks_decoded


cdef Buf *buf_new() noexcept nogil:
    cdef Buf *b = <Buf *>calloc(1, sizeof(Buf))
    if b == NULL:
        return NULL
    b.ctx = ZSTD_createDCtx()
    b.bounce = <uint32_t *>malloc(BOUNCE * ITEM)
    b.fd = -1
    if b.ctx == NULL or b.bounce == NULL:
        buf_free(b)
        return NULL
    buf_forget(b)
    return b


cdef void buf_free(Buf *b) noexcept nogil:
    cdef int i
    if b == NULL:
        return
    buf_close(b)
    free(b.cbuf)
    for i in range(SLOTS):
        free(b.planes[i])
        free(b.data[i])
    free(b.bounce)
    if b.ctx != NULL:
        ZSTD_freeDCtx(b.ctx)
    free(b)


cdef void buf_forget(Buf *b) noexcept nogil:
    cdef int i
    for i in range(SLOTS):
        b.slot_entry[i] = NULL
        b.slot_k[i] = -1


cdef void buf_close(Buf *b) noexcept nogil:
    """Close the kept file (at the end of every read; decoded blocks are kept)."""
    if b.fd >= 0:
        close(b.fd)
    b.fd = -1
    b.fd_path = NULL


cdef int64_t buf_pread(Buf *b, const char *path, void *dest, int64_t n,
                       int64_t offset) noexcept nogil:
    """pread of n bytes of `path`, kept open for the next read of the same path; the count
    read (short: the file is shorter than asked), or -1 with failed_errno set."""
    cdef int64_t total = 0
    cdef ssize_t got
    if b.fd < 0 or b.fd_path != path:
        if b.fd >= 0:
            close(b.fd)
        b.fd_path = NULL
        b.fd = c_open(path, O_RDONLY)
        if b.fd < 0:
            b.failed_errno = bamstore_errno()
            return -1
        b.fd_path = path
    while total < n:
        got = pread(b.fd, <uint8_t *>dest + total, n - total, offset + total)
        if got < 0:
            b.failed_errno = bamstore_errno()
            return -1
        if got == 0:
            break
        total += got
    return total


cdef int64_t pread_file(const char *path, void *dest, int64_t n, int64_t offset,
                        int64_t *err) noexcept nogil:
    """open, pread n bytes (fewer at the end of the file), close: for loading a chunk's header,
    which needs no reading state (a `Buf` holds a zstd context and a 256 KiB buffer, whose
    allocation cost more than the read). The count read, or -1 with *err set."""
    cdef int64_t total = 0
    cdef ssize_t got
    cdef int fd = c_open(path, O_RDONLY)
    if fd < 0:
        err[0] = bamstore_errno()
        return -1
    while total < n:
        got = pread(fd, <uint8_t *>dest + total, n - total, offset + total)
        if got < 0:
            err[0] = bamstore_errno()
            close(fd)
            return -1
        if got == 0:
            break
        total += got
    close(fd)
    return total


cdef int buf_reserve(Buf *b, int64_t cbytes, int64_t bbytes) noexcept nogil:
    """Room for a compressed block of cbytes and decoded blocks of bbytes (0 or -1)."""
    cdef uint8_t *p
    cdef int i
    if cbytes > b.cbuf_len:
        p = <uint8_t *>malloc(cbytes)
        if p == NULL:
            return -1
        free(b.cbuf)
        b.cbuf = p
        b.cbuf_len = cbytes
    if bbytes > b.slot_len:
        for i in range(SLOTS):
            free(b.planes[i])
            free(b.data[i])
            b.planes[i] = <uint8_t *>malloc(bbytes)
            b.data[i] = <uint32_t *>malloc(bbytes)
            if b.planes[i] == NULL or b.data[i] == NULL:
                b.slot_len = 0
                buf_forget(b)
                return -1
        b.slot_len = bbytes
        buf_forget(b)
    return 0


cdef int buf_slot_of(Buf *b, const Entry *e, int64_t k) noexcept nogil:
    """The slot holding block k of entry e as loaded now, or -1."""
    cdef int i
    for i in range(SLOTS):
        if b.slot_entry[i] == e and b.slot_k[i] == k and b.slot_stamp[i] == e.stamp:
            return i
    return -1


cdef int buf_victim(Buf *b) noexcept nogil:
    """The least recently used slot."""
    cdef int i, best = 0
    for i in range(1, SLOTS):
        if b.slot_used[i] < b.slot_used[best]:
            best = i
    return best


cdef int buf_fail(Buf *b, int rc, int64_t row, int64_t col) noexcept nogil:
    b.failed_row = row
    b.failed_col = col
    return rc


cdef class Scratch:
    """The reading state of one calling thread: one `Buf` per thread it reads with (`threads`:
    the rows of one read are split between them), never shared with another caller."""

    cdef Buf **bufs
    cdef readonly int threads
    cdef readonly int64_t failed_row, failed_col, failed_errno

    def __cinit__(self, int threads=1):
        cdef int i
        self.threads = max(1, threads)
        self.bufs = <Buf **>calloc(self.threads, sizeof(Buf *))
        if self.bufs == NULL:
            raise MemoryError()
        for i in range(self.threads):
            self.bufs[i] = buf_new()
            if self.bufs[i] == NULL:
                raise MemoryError("cannot allocate a zstd context")

    def __dealloc__(self):
        cdef int i
        if self.bufs != NULL:
            for i in range(self.threads):
                buf_free(self.bufs[i])
            free(self.bufs)

    @property
    def blocks_decoded(self) -> int:
        """Blosc blocks decoded by this scratch so far, over its threads."""
        cdef int i
        cdef int64_t n = 0
        for i in range(self.threads):
            n += self.bufs[i].blocks_decoded
        return n

    cdef int settle(self, int *results) noexcept nogil:
        """The first failure among the threads' results (its chunk and errno kept), or OK;
        every kept file is closed."""
        cdef int i, rc = OK
        for i in range(self.threads):
            buf_close(self.bufs[i])
            if rc == OK and results[i] != OK:
                rc = results[i]
                self.failed_row = self.bufs[i].failed_row
                self.failed_col = self.bufs[i].failed_col
                self.failed_errno = self.bufs[i].failed_errno
        return rc


cdef char *_copy_path(bytes path) except NULL:
    cdef Py_ssize_t n = len(path)
    cdef char *p = <char *>malloc(n + 1)
    if p == NULL:
        raise MemoryError()
    memcpy(p, <const char *>path, n)
    p[n] = 0
    return p


cdef class ChunkTable:
    """What is known of the chunks of one coverage array (rows x chunk columns); see above."""

    cdef readonly int64_t n_rows, n_cols, chunk_len, budget, footprint
    cdef Entry **rows  # per row, an array of n_cols entries, allocated when first touched
    cdef uint64_t clock
    cdef int readers
    cdef int evicting
    cdef PyThread_type_lock lock
    cdef dict owners  # (row, col) -> the object whose memory an entry points into
    cdef readonly int64_t failed_row, failed_col, failed_errno

    def __cinit__(self, int64_t n_rows, int64_t n_cols, int64_t chunk_len, int64_t budget):
        if n_rows < 0 or n_cols < 0 or chunk_len < 1:
            raise ValueError("a table needs n_rows, n_cols >= 0 and chunk_len >= 1")
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.chunk_len = chunk_len
        self.budget = budget
        self.rows = <Entry **>calloc(max(n_rows, 1), sizeof(Entry *))
        self.lock = PyThread_allocate_lock()
        self.owners = {}
        if self.rows == NULL or self.lock == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef int64_t r, c
        if self.rows != NULL:
            for r in range(self.n_rows):
                if self.rows[r] != NULL:
                    for c in range(self.n_cols):
                        free(self.rows[r][c].block_start)
                        free(self.rows[r][c].block_end)
                        free(self.rows[r][c].path)
                    free(self.rows[r])
            free(self.rows)
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    cdef inline void acquire(self) noexcept nogil:
        PyThread_acquire_lock(self.lock, WAIT_LOCK)

    cdef inline void release(self) noexcept nogil:
        PyThread_release_lock(self.lock)

    cdef Entry *entry(self, int64_t row, int64_t col) noexcept nogil:
        """The entry of (row, col), allocating its row; NULL if out of range or out of memory."""
        cdef Entry *fresh
        if row < 0 or row >= self.n_rows or col < 0 or col >= self.n_cols:
            return NULL
        if self.rows[row] == NULL:
            fresh = <Entry *>calloc(self.n_cols, sizeof(Entry))
            if fresh == NULL:
                return NULL
            self.acquire()
            if self.rows[row] == NULL:
                self.rows[row] = fresh
                self.footprint += self.n_cols * sizeof(Entry)
                fresh = NULL
            self.release()
            free(fresh)
        return &self.rows[row][col]

    # ------------------------------------------------------------ loading (with the GIL)

    @property
    def entry_size(self) -> int:
        """Bytes of one entry: each row touched costs n_cols of them, never evicted."""
        return sizeof(Entry)

    def state(self, int64_t row, int64_t col) -> int:
        cdef Entry *e = self.entry(row, col)
        if e == NULL:
            raise IndexError(f"chunk ({row}, {col}) is outside the table")
        return e.state

    def unloaded(self, const int64_t[::1] rows, int64_t col_first, int64_t col_last) -> list:
        """(row, col) pairs of rows x [col_first, col_last] not loaded yet."""
        cdef list out = []
        cdef Py_ssize_t i
        cdef int64_t c
        cdef Entry *e
        for i in range(rows.shape[0]):
            for c in range(col_first, col_last + 1):
                e = self.entry(rows[i], c)
                if e == NULL:
                    raise IndexError(f"chunk ({rows[i]}, {c}) is outside the table")
                if e.state == UNKNOWN:
                    out.append((rows[i], c))
        return out

    def evict(self) -> int:
        """Drop the least recently used half of the entries when over budget. Entries in use
        are never freed: new reads wait while the running ones finish, then the eviction runs
        (so reads that overlap without end cannot hold memory past the budget). Returns the
        entries dropped."""
        cdef int64_t r, c, dropped = 0
        cdef uint64_t cutoff
        cdef Entry *e
        self.acquire()
        if self.footprint <= self.budget:
            self.release()
            return 0
        self.evicting = 1
        while self.readers:
            self.release()
            with nogil:
                usleep(50)
            self.acquire()
        try:
            stamps = []
            for r in range(self.n_rows):
                if self.rows[r] != NULL:
                    for c in range(self.n_cols):
                        if self.rows[r][c].state != UNKNOWN:
                            stamps.append(self.rows[r][c].last_use)
            stamps.sort()
            if not stamps:
                return 0
            cutoff = stamps[len(stamps) // 2]
            for r in range(self.n_rows):
                if self.rows[r] == NULL:
                    continue
                for c in range(self.n_cols):
                    e = &self.rows[r][c]
                    if e.state != UNKNOWN and e.last_use <= cutoff:
                        free(e.block_start)
                        free(e.block_end)
                        free(e.path)
                        self.footprint -= e.footprint
                        memset(e, 0, sizeof(Entry))
                        self.owners.pop((r, c), None)
                        dropped += 1
            return dropped
        finally:
            self.evicting = 0
            self.release()

    def set_absent(self, int64_t row, int64_t col):
        """No chunk at (row, col): its positions are zeros."""
        self._install(row, col, ABSENT, None, 0, 0, None, None)

    def set_decoded(self, int64_t row, int64_t col, values):
        """A chunk the caller decoded (a codec not read here): `chunk_len` uint32 values."""
        array = np.ascontiguousarray(values, dtype=np.uint32)
        if array.shape != (self.chunk_len,):
            raise ValueError(f"{array.shape} values for a chunk of {self.chunk_len}")
        self._install(row, col, DECODED, None, 0, self.chunk_len * ITEM, None, array)

    def load_raw(self, int64_t row, int64_t col, bytes path, int64_t base):
        """An uncompressed chunk: `chunk_len` little-endian uint32 at `base` of file `path`."""
        self._install(row, col, RAW, path, base, self.chunk_len * ITEM, None, None)

    def load_raw_bytes(self, int64_t row, int64_t col, data):
        """An uncompressed chunk held in memory (fetched from a URL)."""
        view = memoryview(data).cast("B")
        if len(view) != self.chunk_len * ITEM:
            self.failed_row, self.failed_col = row, col
            return DAMAGED
        self._install(row, col, RAW, None, 0, self.chunk_len * ITEM, view, data)
        return OK

    def load_frame(self, int64_t row, int64_t col, bytes path, int64_t base, int64_t length):
        """A blosc1 frame at `base` of file `path`, `length` bytes long (-1: to the end of the
        file): reads its header and block offsets. OK, MISSING, DAMAGED, UNSUPPORTED or
        IO_ERROR (with failed_errno)."""
        cdef int64_t want = HEAD_GUESS if length < 0 else min(length, HEAD_GUESS)
        head = self._read(row, col, path, base, want)
        if not isinstance(head, bytes):
            return head
        return self._parse_frame(row, col, head, path, base, length, None)

    def load_frame_bytes(self, int64_t row, int64_t col, frame):
        """A blosc1 frame held in memory (fetched from a URL); the table keeps `frame` alive
        while the entry exists."""
        view = memoryview(frame).cast("B")
        return self._parse_frame(row, col, bytes(view[:HEAD_GUESS]), None, 0, len(view), frame)

    cdef object _read(self, int64_t row, int64_t col, bytes path, int64_t offset, int64_t n):
        """n bytes (or fewer at the end of the file) of `path`, or a negative result."""
        buf = bytearray(max(n, 1))
        cdef uint8_t[::1] view = buf
        cdef const char *cpath = path
        cdef int64_t got
        cdef int64_t err = 0
        with nogil:
            got = pread_file(cpath, &view[0], n, offset, &err)
        if got < 0:
            self.failed_row, self.failed_col, self.failed_errno = row, col, err
            return MISSING if err == ENOENT else IO_ERROR
        return bytes(buf[:got])

    cdef object _parse_frame(self, int64_t row, int64_t col, bytes head, bytes path,
                             int64_t base, int64_t length, object owner):
        cdef const uint8_t *h = head
        cdef int64_t n = len(head)
        cdef int32_t version, flags, typesize, nbytes, blocksize, cbytes
        cdef int64_t nblocks, index_end
        self.failed_row, self.failed_col, self.failed_errno = row, col, 0
        if n < BLOSC_HEADER:
            return DAMAGED
        version, flags, typesize = h[0], h[2], h[3]
        nbytes, blocksize, cbytes = le_i32(h + 4), le_i32(h + 8), le_i32(h + 12)
        if version != 2 or typesize != ITEM:
            return UNSUPPORTED
        if nbytes != self.chunk_len * ITEM or cbytes < BLOSC_HEADER:
            return DAMAGED
        if length >= 0 and cbytes > length:
            return DAMAGED  # the frame says it is longer than the bytes there are
        if flags & BLOSC_MEMCPYED:
            if cbytes != BLOSC_HEADER + nbytes:
                return DAMAGED
            self._install(row, col, RAW, path, base + BLOSC_HEADER, nbytes,
                          None if owner is None else memoryview(owner).cast("B"), owner)
            return OK
        if (flags & BLOSC_BITSHUFFLE) or ((flags & 0xE0) >> 5) != BLOSC_ZSTD:
            return UNSUPPORTED
        if blocksize <= 0 or blocksize % ITEM:
            return DAMAGED
        nblocks = (nbytes + blocksize - 1) // blocksize
        index_end = BLOSC_HEADER + 4 * nblocks
        if index_end > cbytes:
            return DAMAGED
        if index_end > n:
            if owner is not None:
                head = bytes(memoryview(owner).cast("B")[:index_end])
            else:
                head = self._read(row, col, path, base, index_end)
                if not isinstance(head, bytes):
                    return head
            if len(head) < index_end:
                return DAMAGED
        # each block runs to the next block's start (the last to the frame's end); c-blosc
        # writes them in order, except when it compressed with threads: sorted then
        cdef int64_t *bs = <int64_t *>malloc(nblocks * sizeof(int64_t))
        cdef int64_t *be = <int64_t *>malloc(nblocks * sizeof(int64_t))
        cdef const uint8_t *hp = head
        cdef bint in_order = True
        cdef int64_t i
        if bs == NULL or be == NULL:
            free(bs)
            free(be)
            raise MemoryError()
        for i in range(nblocks):
            bs[i] = le_i32(hp + BLOSC_HEADER + 4 * i)
            if bs[i] < index_end or bs[i] >= cbytes:
                free(bs)
                free(be)
                return DAMAGED
            if i and bs[i] <= bs[i - 1]:
                in_order = False
        if in_order:
            for i in range(nblocks - 1):
                be[i] = bs[i + 1]
            be[nblocks - 1] = cbytes
        else:
            starts = np.frombuffer(head, dtype="<i4", count=nblocks, offset=BLOSC_HEADER)
            starts = starts.astype(np.int64)
            order = np.argsort(starts, kind="stable")
            ends = np.empty(nblocks, dtype=np.int64)
            ends[order] = np.append(starts[order][1:], cbytes)
            if np.any(ends <= starts):
                free(bs)
                free(be)
                return DAMAGED
            for i in range(nblocks):
                be[i] = ends[i]
        self._install_frame(row, col, path, base, flags, nblocks, blocksize, nbytes, bs, be,
                            owner)
        return OK

    cdef void _install_frame(self, int64_t row, int64_t col, bytes path, int64_t base,
                             int32_t flags, int64_t nblocks, int64_t blocksize, int64_t nbytes,
                             int64_t *bs, int64_t *be, object owner) except *:
        """Install a frame's entry; takes ownership of the block offsets `bs` and `be`."""
        cdef Entry *e
        cdef const uint8_t[::1] mem
        cdef char *cpath = NULL
        if path is not None:
            try:
                cpath = _copy_path(path)
            except MemoryError:
                free(bs)
                free(be)
                raise
        if owner is not None:
            mem = memoryview(owner).cast("B")
        e = self.entry(row, col)
        if e == NULL:
            free(bs)
            free(be)
            free(cpath)
            raise IndexError(f"chunk ({row}, {col}) is outside the table")
        self.acquire()
        if e.state != UNKNOWN:  # loaded meanwhile by another thread
            self.release()
            free(bs)
            free(be)
            free(cpath)
            return
        e.flags = flags
        e.nblocks = <int32_t>nblocks
        e.block_bytes = blocksize
        e.nbytes = nbytes
        e.base = base
        e.block_start = bs
        e.block_end = be
        e.mem = &mem[0] if owner is not None else NULL
        e.path = cpath
        e.footprint = 16 * nblocks + (len(path) if path is not None else 0) + sizeof(Entry)
        self.footprint += e.footprint
        self.clock += 1
        e.last_use = self.clock
        e.stamp = self.clock
        e.state = FRAME
        if owner is not None:
            self.owners[(row, col)] = owner
        self.release()

    cdef void _install(self, int64_t row, int64_t col, int state, bytes path, int64_t base,
                       int64_t nbytes, object mem_view, object owner) except *:
        cdef const uint8_t[::1] mem
        cdef const uint32_t[::1] values
        cdef char *cpath = NULL
        cdef Entry *e = self.entry(row, col)
        if e == NULL:
            raise IndexError(f"chunk ({row}, {col}) is outside the table")
        if path is not None:
            cpath = _copy_path(path)
        self.acquire()
        if e.state != UNKNOWN:
            self.release()
            free(cpath)
            return
        e.base = base
        e.nbytes = nbytes
        e.path = cpath
        if state == DECODED:
            values = owner
            e.decoded = &values[0]
        elif mem_view is not None:
            mem = mem_view
            e.mem = &mem[0]
        e.footprint = sizeof(Entry) + (len(path) if path is not None else 0) + (
            nbytes if owner is not None else 0)
        self.footprint += e.footprint
        self.clock += 1
        e.last_use = self.clock
        e.stamp = self.clock
        e.state = state
        if owner is not None:
            self.owners[(row, col)] = owner
        self.release()

    # ------------------------------------------------------------ reading (without the GIL)

    cdef void begin_read(self) noexcept nogil:
        """Count a read in (after any eviction under way)."""
        while True:
            self.acquire()
            if not self.evicting:
                self.readers += 1
                self.clock += 1
                self.release()
                return
            self.release()
            usleep(50)

    cdef void end_read(self) noexcept nogil:
        self.acquire()
        self.readers -= 1
        self.release()

    cdef int block(self, Entry *e, int64_t k, int64_t lo, int64_t hi, Buf *s,
                   const uint32_t **values) noexcept nogil:
        """Block k of a FRAME entry, decoded (or still held) in a slot of `s`, with at least its
        items [lo, hi) unshuffled."""
        cdef int64_t start, length, got, bsize
        cdef const uint8_t *src
        cdef int rc
        cdef int i = buf_slot_of(s, e, k)
        s.tick += 1
        if i < 0:
            start = e.block_start[k]
            length = e.block_end[k] - start
            bsize = min(e.block_bytes, e.nbytes - k * e.block_bytes)
            if buf_reserve(s, length, e.block_bytes) != 0:
                return DAMAGED
            if e.mem != NULL:
                src = e.mem + e.base + start
            else:
                got = buf_pread(s, e.path, s.cbuf, length, e.base + start)
                if got < 0:
                    return MISSING if s.failed_errno == ENOENT else IO_ERROR
                if got != length:
                    return DAMAGED
                src = s.cbuf
            i = buf_victim(s)
            s.slot_entry[i] = NULL
            rc = decode_block(src, length, e.flags, bsize, bsize < e.block_bytes, s.planes[i],
                              s.data[i], s.ctx)
            if rc != OK:
                return rc
            s.blocks_decoded += 1
            s.slot_entry[i] = e
            s.slot_stamp[i] = e.stamp
            s.slot_k[i] = k
            s.slot_items[i] = bsize // ITEM
            s.slot_shuffled[i] = (e.flags & BLOSC_SHUFFLE) != 0
            s.slot_lo[i] = 0
            s.slot_hi[i] = 0 if s.slot_shuffled[i] else s.slot_items[i]
        s.slot_used[i] = s.tick
        # unshuffle what is asked and not yet done, each item once per decode (the gap between
        # the done range and the asked one too: the done range stays one interval)
        if s.slot_hi[i] <= s.slot_lo[i]:
            unshuffle_range(s.planes[i], s.slot_items[i], lo, hi, s.data[i])
            s.slot_lo[i] = lo
            s.slot_hi[i] = hi
        else:
            if lo < s.slot_lo[i]:
                unshuffle_range(s.planes[i], s.slot_items[i], lo, s.slot_lo[i], s.data[i])
                s.slot_lo[i] = lo
            if hi > s.slot_hi[i]:
                unshuffle_range(s.planes[i], s.slot_items[i], s.slot_hi[i], hi, s.data[i])
                s.slot_hi[i] = hi
        values[0] = s.data[i]
        return OK

    cdef int run(self, int64_t row, int64_t pos, int64_t end, Buf *s, const uint32_t **values,
                 int64_t *count) noexcept nogil:
        """The values of `row` from `pos` on, as far as they lie in one piece of memory (up to
        `end`): a pointer and a count, or values NULL for a run of zeros."""
        cdef int64_t col = pos // self.chunk_len
        cdef int64_t cstart = col * self.chunk_len
        cdef int64_t stop = min(end, cstart + self.chunk_len)
        cdef int64_t items, k, b0, got, n
        cdef Entry *e = self.entry(row, col)
        cdef int rc
        if e == NULL or e.state == UNKNOWN:
            return buf_fail(s, NEED_LOAD, row, col)
        e.last_use = self.clock
        if e.state == ABSENT:
            values[0] = NULL
            count[0] = stop - pos
        elif e.state == DECODED:
            values[0] = e.decoded + (pos - cstart)
            count[0] = stop - pos
        elif e.state == RAW:
            n = stop - pos
            if e.mem != NULL:
                values[0] = <const uint32_t *>(e.mem + e.base) + (pos - cstart)
            else:
                n = min(n, BOUNCE)
                got = buf_pread(s, e.path, s.bounce, n * ITEM, e.base + (pos - cstart) * ITEM)
                if got < 0:
                    return buf_fail(s, MISSING if s.failed_errno == ENOENT else IO_ERROR, row, col)
                if got != n * ITEM:
                    return buf_fail(s, DAMAGED, row, col)
                values[0] = s.bounce
            count[0] = n
        else:
            items = e.block_bytes // ITEM
            k = (pos - cstart) // items
            b0 = cstart + k * items
            n = min(stop, b0 + items) - pos
            rc = self.block(e, k, pos - b0, pos - b0 + n, s, values)
            if rc != OK:
                return buf_fail(s, rc, row, col)
            values[0] += pos - b0
            count[0] = n
        return OK

    cdef int window_row(self, int64_t row, Py_ssize_t i, const int64_t[::1] starts,
                        int64_t width, uint32_t[:, :, ::1] out, Buf *s) noexcept nogil:
        """out[:, i] = the windows of one row."""
        cdef Py_ssize_t w
        cdef int rc
        cdef int64_t pos, end, n
        cdef const uint32_t *vals
        cdef uint32_t *dest
        for w in range(starts.shape[0]):
            pos = starts[w]
            end = pos + width
            dest = &out[w, i, 0]
            while pos < end:
                rc = self.run(row, pos, end, s, &vals, &n)
                if rc != OK:
                    return rc
                if vals == NULL:
                    memset(dest, 0, n * ITEM)
                else:
                    memcpy(dest, vals, n * ITEM)
                dest += n
                pos += n
        return OK

    cdef int pieces_row(self, int64_t row, Py_ssize_t i, const int64_t[::1] starts,
                        const int64_t[::1] ends, int how, int64_t[:, ::1] out,
                        Buf *s) noexcept nogil:
        """out[i] folded with the pieces of one row."""
        cdef Py_ssize_t p
        cdef int rc
        cdef int64_t pos, end, n, acc
        cdef const uint32_t *vals
        for p in range(starts.shape[0]):
            pos = starts[p]
            end = ends[p]
            acc = out[i, p]
            while pos < end:
                rc = self.run(row, pos, end, s, &vals, &n)
                if rc != OK:
                    return rc
                acc = fold(acc, vals, n, how)
                pos += n
            out[i, p] = acc
        return OK

    def read_windows(self, const int64_t[::1] rows, const int64_t[::1] starts, int64_t width,
                     uint32_t[:, :, ::1] out, Scratch scratch) -> int:
        """out[w, i] = positions [starts[w], starts[w] + width) of rows[i]; OK or a code. The
        rows are split between the scratch's threads."""
        cdef Py_ssize_t i, nrows = rows.shape[0]
        cdef int t, r, rc
        if (out.shape[0] != starts.shape[0] or out.shape[1] != rows.shape[0]
                or out.shape[2] != width):
            raise ValueError("out has the wrong shape")
        if width == 0:
            return OK
        cdef int *results = <int *>calloc(scratch.threads, sizeof(int))
        if results == NULL:
            raise MemoryError()
        with nogil:
            self.begin_read()
            if scratch.threads > 1 and nrows > 1:
                for i in prange(nrows, num_threads=scratch.threads, schedule="static"):
                    t = threadid()
                    if results[t] == OK:
                        r = self.window_row(rows[i], i, starts, width, out, scratch.bufs[t])
                        if r != OK:
                            results[t] = r
            else:
                for i in range(nrows):
                    r = self.window_row(rows[i], i, starts, width, out, scratch.bufs[0])
                    if r != OK:
                        results[0] = r
                        break
            rc = scratch.settle(results)
            self.end_read()
        free(results)
        return rc

    def reduce_pieces(self, const int64_t[::1] rows, const int64_t[::1] starts,
                      const int64_t[::1] ends, int how, int64_t[:, ::1] out,
                      Scratch scratch) -> int:
        """out[i, p] folded with the sum, maximum or minimum of positions [starts[p], ends[p])
        of rows[i] (out holds the starting values). Pieces sorted by start decode each block
        once. The rows are split between the scratch's threads."""
        cdef Py_ssize_t i, nrows = rows.shape[0]
        cdef int t, r, rc
        if out.shape[0] != rows.shape[0] or out.shape[1] != starts.shape[0]:
            raise ValueError("out has the wrong shape")
        if ends.shape[0] != starts.shape[0]:
            raise ValueError("starts and ends differ in length")
        cdef int *results = <int *>calloc(scratch.threads, sizeof(int))
        if results == NULL:
            raise MemoryError()
        with nogil:
            self.begin_read()
            if scratch.threads > 1 and nrows > 1:
                for i in prange(nrows, num_threads=scratch.threads, schedule="static"):
                    t = threadid()
                    if results[t] == OK:
                        r = self.pieces_row(rows[i], i, starts, ends, how, out, scratch.bufs[t])
                        if r != OK:
                            results[t] = r
            else:
                for i in range(nrows):
                    r = self.pieces_row(rows[i], i, starts, ends, how, out, scratch.bufs[0])
                    if r != OK:
                        results[0] = r
                        break
            rc = scratch.settle(results)
            self.end_read()
        free(results)
        return rc


def zstd_decompress(const uint8_t[::1] data, int64_t nbytes) -> bytes:
    """A zstd frame decoded to exactly `nbytes` bytes (ValueError otherwise): the small
    metadata arrays zarr writes with its default bytes + zstd codecs."""
    out = bytearray(nbytes)
    cdef uint8_t[::1] view = out
    cdef ZSTD_DCtx *ctx = ZSTD_createDCtx()
    cdef size_t got
    if ctx == NULL:
        raise MemoryError()
    try:
        with nogil:
            got = ZSTD_decompressDCtx(ctx, &view[0] if nbytes else NULL, nbytes,
                                      &data[0] if data.shape[0] else NULL, data.shape[0])
    finally:
        ZSTD_freeDCtx(ctx)
    if ZSTD_isError(got) or <int64_t>got != nbytes:
        raise ValueError(f"not a zstd frame of {nbytes} bytes")
    return bytes(out)
