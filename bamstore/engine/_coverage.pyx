# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled per-base coverage kernel.

Why compiled: a per-read Python loop is about 4x slower than mosdepth (issue 3). Here the read
loop runs in C with the GIL released, so the worker threads that decompress BGZF blocks and
compress finished windows run at the same time.

Why windows: memory must not grow with contig length. Coverage is produced one chunk window
[k*chunk_len, (k+1)*chunk_len) at a time. Every aligned block adds +1 at its start and -1 at its
end to a difference array that covers only the current window; events beyond the window (a read
crossing the boundary, or a block after a long N gap) wait in a small pending list until their
window comes. Records are coordinate-sorted, so once one starts at or after the window end, the
window is final.

Two record sources feed the same window logic:
  * "blocks" (BAM): Python hands in decompressed BGZF blocks (libdeflate, in worker threads;
    see blocks.py) and `_read_fed_record` parses BAM records from them, including records that
    straddle blocks and CIGARs longer than 65535 operations (stored in the CG tag). This is the
    fast path: htslib in pysam inflates with zlib, about 2.7x slower than libdeflate.
  * "htslib" (CRAM, and BAM on request): records come from htslib's index iterator.
Either source can also be a stream (`stream=True`: `--bam -`, a FIFO), read once, front to back,
without an index: contigs come in the order of their records. The record that ends one contig
(the first of the next) is held, not lost, until the driver starts its contig
(`start_contig`) or skips it (`skip_stream_contig`, for contigs that are not stored); blocks
and the held record survive from one contig to the next.
Three counting modes share the window logic and differ only in what one record adds
(`_add_record`): its aligned blocks (reads), its fragment (fragments) or one cut site (cutsites).
Their semantics are defined by `CountingMode` in bamstore/options.py. A fragment-length filter
(fragments and cutsites only) is applied there too, after the mode is known: reads mode, whose
loop is the hottest, never tests it, and a record it leaves out is not counted at all
(`REC_NOT_COUNTED`: no total_reads, no warnings of counted records).

`bamstore/engine/kernel.py` chooses the record source and drives it; the tests compare both
sources with samtools depth, bedtools and a numpy oracle of each counting mode.
"""

from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy, memset

from bamstore.engine.kernel import UnsortedInputError


cdef extern from "htslib/hts.h" nogil:
    ctypedef struct htsFile:
        pass
    ctypedef struct hts_idx_t:
        pass
    ctypedef struct hts_pair64_max_t:
        uint64_t u
        uint64_t v
    ctypedef struct hts_itr_t:
        int n_off
        hts_pair64_max_t *off
    htsFile *hts_open(const char *fn, const char *mode)
    int hts_close(htsFile *fp)
    int hts_set_threads(htsFile *fp, int n)
    int hts_set_fai_filename(htsFile *fp, const char *fn_aux)
    void hts_itr_destroy(hts_itr_t *iter)
    void hts_idx_destroy(hts_idx_t *idx)
    int64_t HTS_POS_MAX


cdef extern from "htslib/sam.h" nogil:
    ctypedef struct sam_hdr_t:
        int32_t n_targets
    ctypedef struct bam1_core_t:
        int64_t pos
        int64_t isize
        int32_t tid
        uint8_t qual
        uint16_t flag
        uint32_t n_cigar
        int32_t l_qseq
    ctypedef struct bam1_t:
        bam1_core_t core
    bam1_t *bam_init1()
    void bam_destroy1(bam1_t *b)
    sam_hdr_t *sam_hdr_read(htsFile *fp)
    void sam_hdr_destroy(sam_hdr_t *h)
    const char *sam_hdr_tid2name(const sam_hdr_t *h, int tid)
    hts_idx_t *sam_index_load2(htsFile *fp, const char *fn, const char *fnidx)
    hts_itr_t *sam_itr_queryi(const hts_idx_t *idx, int tid, int64_t beg, int64_t end)
    int sam_itr_next(htsFile *fp, hts_itr_t *itr, bam1_t *r)
    int sam_read1(htsFile *fp, sam_hdr_t *h, bam1_t *b)
    uint32_t *bam_get_cigar(bam1_t *b)


# BAM flag bits (SAM specification).
cdef enum:
    FLAG_PAIRED = 0x1
    FLAG_PROPER_PAIR = 0x2
    FLAG_UNMAPPED = 0x4
    FLAG_REVERSE = 0x10
    FLAG_READ1 = 0x40
    FLAG_READ2 = 0x80
    FLAG_NOT_PRIMARY = 0x900  # secondary 0x100 | supplementary 0x800

# Strand modes; the values are shared with bamstore/options.py (STRAND_MODES).
cdef enum:
    STRAND_NONE = 0
    STRAND_U = 1
    STRAND_F = 2
    STRAND_R = 3

# Counting modes; the values are shared with bamstore/options.py (COUNTING_MODES).
cdef enum:
    MODE_READS = 0
    MODE_FRAGMENTS = 1
    MODE_CUTSITES = 2

# CIGAR operations that consume the reference, as a bit set indexed by op code: M=0, D=2, N=3,
# '='=7, X=8. One shift and mask per operation instead of a chain of comparisons.
cdef enum:
    REF_CONSUMING_OPS = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 7) | (1 << 8)

# Status codes of the internal loop; next_window turns them into returns or exceptions.
cdef enum:
    REC_OK = 0
    REC_END = 1
    ERR_UNSORTED = -2
    ERR_DECODE = -3
    ERR_MEMORY = -4
    NEED_DATA_CODE = -5
    ERR_BEFORE_WINDOW = -6
    STREAM_END_CODE = -7
    REC_NOT_COUNTED = 2  # from _add_record: the record adds nothing and is not counted

cdef enum:
    BAM_CORE_SIZE = 32          # bytes of a BAM record after block_size, before the read name
    MAX_RECORD_SIZE = 1 << 30

NEED_DATA = NEED_DATA_CODE  # returned by next_window in fed mode: feed() the next block
STREAM_END = STREAM_END_CODE  # returned by next_stream_contig once a stream has no more records

cdef extern from *:
    # setup.py defines it: the SHA-256 of this file as it was compiled (kernel.py compares it
    # with the file in a source checkout, to say "rebuild" instead of failing on a stale build)
    const char *BAMSTORE_PYX_SHA256
SOURCE_SHA256 = BAMSTORE_PYX_SHA256.decode()


cdef struct Event:
    int64_t pos
    int32_t delta
    int32_t rev


cdef inline uint32_t load_u32(const uint8_t *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)  # BAM fields are unaligned little-endian; this compiles to one load on x86
    return v


cdef inline int32_t load_i32(const uint8_t *p) noexcept nogil:
    cdef int32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint16_t load_u16(const uint8_t *p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v


cdef inline bint is_sense_strand(uint16_t flag, int mode) noexcept nogil:
    """QuantNado's strand rules (spec 2b): True means the forward/sense array."""
    cdef bint reverse = (flag & FLAG_REVERSE) != 0
    if mode == STRAND_U:
        return not reverse
    if flag & FLAG_PAIRED:
        if mode == STRAND_R:
            return ((flag & FLAG_READ1) and reverse) or ((flag & FLAG_READ2) and not reverse)
        return ((flag & FLAG_READ1) and not reverse) or ((flag & FLAG_READ2) and reverse)
    if mode == STRAND_R:
        return reverse
    return not reverse


cdef inline Py_ssize_t aux_value_size(const uint8_t *p, Py_ssize_t avail) noexcept nogil:
    """Size of one aux value at p (after tag and type), or -1 if malformed."""
    cdef uint8_t t = p[0]
    cdef Py_ssize_t i, width
    if t == b'A' or t == b'c' or t == b'C':
        return 2
    if t == b's' or t == b'S':
        return 3
    if t == b'i' or t == b'I' or t == b'f':
        return 5
    if t == b'Z' or t == b'H':
        i = 1
        while i < avail and p[i] != 0:
            i += 1
        return i + 1 if i < avail else -1
    if t == b'B':
        if avail < 6:
            return -1
        if p[1] == b'c' or p[1] == b'C':
            width = 1
        elif p[1] == b's' or p[1] == b'S':
            width = 2
        elif p[1] == b'i' or p[1] == b'I' or p[1] == b'f':
            width = 4
        else:
            return -1
        return 6 + width * <Py_ssize_t>load_u32(p + 2)
    return -1


cdef class CompiledCoverageReader:
    """Streams per-base coverage of one BAM/CRAM, one contig and one chunk window at a time."""

    cdef htsFile *fp
    cdef sam_hdr_t *hdr
    cdef hts_idx_t *idx
    cdef hts_itr_t *itr
    cdef bam1_t *b
    # settings
    cdef uint16_t exclude_flags
    cdef int min_mapq
    cdef bint count_deletions
    cdef int strand_mode
    cdef int mode
    cdef int64_t extend       # fragments: single-end reads cover this many bases (0: their span)
    cdef int64_t shift_fwd    # cutsites: offset of a forward read's cut site from its start
    cdef int64_t shift_rev    # cutsites: offset of a reverse read's cut site from its end - 1
    cdef int64_t lookbehind   # how far before its record's start a record can add coverage
    cdef bint fragment_len_filter  # only proper pairs with min <= |TLEN| <= max count
    cdef int64_t min_fragment_len
    cdef int64_t max_fragment_len
    cdef int64_t chunk_len
    cdef public bint fed  # True: records come from feed()'s blocks; False: htslib iterator
    cdef public bint stream  # read front to back without an index (see the module docstring)
    cdef int32_t n_targets
    # the current record, from either source
    cdef int32_t rec_tid
    cdef int64_t rec_pos
    cdef int64_t rec_tlen
    cdef uint16_t rec_flag
    cdef uint8_t rec_mapq
    cdef uint32_t rec_n_cigar
    cdef int32_t rec_l_qseq
    cdef const uint8_t *rec_cigar
    # fed-block state
    cdef const uint8_t[::1] block_view  # keeps the fed block alive while blk points into it
    cdef const uint8_t *blk
    cdef Py_ssize_t blk_len
    cdef Py_ssize_t blk_pos
    cdef uint8_t *scratch
    cdef Py_ssize_t scratch_cap
    cdef Py_ssize_t scratch_len
    cdef bint scratch_pending
    cdef int target_tid
    cdef bint seen_target  # a record of target_tid was read: any other tid ends the contig
    cdef bint end_of_data
    # stream state
    cdef bint held           # rec_* hold a record that is not used yet (it starts a contig)
    cdef bint stream_ended   # the stream has no more records
    cdef bint skipping       # inside skip_stream_contig (which may return NEED_DATA)
    cdef int32_t skip_tid
    cdef public uint64_t skipped_mapped  # mapped records (no 0x4) of the last skipped contig
    # window state
    cdef int32_t *diff_f
    cdef int32_t *diff_r
    cdef Event *pending
    cdef size_t n_pending
    cdef size_t cap_pending
    cdef int64_t length
    cdef int64_t w0
    cdef int64_t carry_f
    cdef int64_t carry_r
    cdef bint window_open
    cdef bint touched
    cdef bint have_record
    cdef bint exhausted
    cdef int64_t last_pos
    cdef public bint contig_open
    # per-contig results, read by the Python driver
    cdef public uint64_t sum_total, sum_fwd, sum_rev, nonzero_positions
    cdef public uint64_t primary_reads, clipped_reads
    cdef public uint64_t mapq255_reads, seqless_reads, long_cigar_reads
    cdef public uint64_t improper_pair_records, off_contig_cut_sites
    cdef public uint64_t single_end_records, outside_fragment_len
    cdef public bint window_has_total, window_has_fwd, window_has_rev
    cdef public int64_t error_pos, error_prev_pos

    def __cinit__(self):
        self.fp = NULL
        self.hdr = NULL
        self.idx = NULL
        self.itr = NULL
        self.b = NULL
        self.diff_f = NULL
        self.diff_r = NULL
        self.pending = NULL
        self.scratch = NULL

    def __init__(self, str path, str index_path, *, int chunk_len, int exclude_flags=0x704,
                 int min_mapq=0, bint count_deletions=False, int strand_mode=0,
                 int mode=MODE_READS, int64_t extend=0, int64_t shift_fwd=0, int64_t shift_rev=0,
                 int64_t lookbehind=0, int64_t min_fragment_len=0, int64_t max_fragment_len=0,
                 int threads=1, str reference=None, bint stream=False, int n_targets=-1):
        """`path` and `index_path`: an indexed BAM/CRAM read through htslib (fed blocks are
        found through its index). `stream=True`: no index; `path` is read front to back by
        htslib, or, with `path` None, records come from fed blocks of a stream whose header
        (`n_targets` contigs) was read by the caller. `min_fragment_len`/`max_fragment_len`
        (0: not set) filter fragments and cutsites by |TLEN|."""
        cdef bytes bpath
        cdef const char *cpath
        cdef bytes bidx
        cdef bytes bref
        if chunk_len <= 0:
            raise ValueError("chunk_len must be positive")
        if mode not in (MODE_READS, MODE_FRAGMENTS, MODE_CUTSITES) or extend < 0 or lookbehind < 0:
            raise ValueError("invalid counting mode")
        if min_fragment_len < 0 or max_fragment_len < 0 or (
                (min_fragment_len or max_fragment_len) and mode == MODE_READS):
            raise ValueError("invalid fragment-length filter")
        self.stream = stream
        if path is not None:
            bpath = path.encode()
            cpath = bpath
            # Without the GIL: a stream's pipe is filled by a Python thread (bam_input/stream.py)
            with nogil:
                self.fp = hts_open(cpath, b"r")
            if self.fp == NULL:
                raise OSError(f"htslib could not open {path}")
            if reference is not None:
                bref = reference.encode()
                if hts_set_fai_filename(self.fp, bref) != 0:
                    raise OSError(f"htslib could not use reference {reference}")
            if threads > 1:
                hts_set_threads(self.fp, threads)
            with nogil:
                self.hdr = sam_hdr_read(self.fp)
            if self.hdr == NULL:
                raise OSError(f"htslib could not read the header of {path}")
            self.n_targets = self.hdr.n_targets
            if not stream:
                bidx = index_path.encode()
                self.idx = sam_index_load2(self.fp, bpath, bidx)
                if self.idx == NULL:
                    raise OSError(f"htslib could not load index {index_path}")
        elif stream and n_targets >= 0:
            self.n_targets = n_targets
            self.fed = True
        else:
            raise ValueError("a path, or a fed stream with n_targets")
        self.b = bam_init1()
        self.chunk_len = chunk_len
        # fragments and cut sites count primary records only: folding 0x900 into the exclude
        # mask makes that part of the read filter's single flag test.
        self.exclude_flags = <uint16_t>(
            exclude_flags | FLAG_UNMAPPED | (FLAG_NOT_PRIMARY if mode != MODE_READS else 0))
        self.min_mapq = min_mapq
        self.count_deletions = count_deletions
        self.strand_mode = strand_mode
        self.mode = mode
        self.extend = extend
        self.shift_fwd = shift_fwd
        self.shift_rev = shift_rev
        self.lookbehind = lookbehind
        self.fragment_len_filter = min_fragment_len > 0 or max_fragment_len > 0
        self.min_fragment_len = min_fragment_len if min_fragment_len > 0 else 1
        self.max_fragment_len = max_fragment_len if max_fragment_len > 0 else INT64_MAX
        self.diff_f = <int32_t *>calloc(chunk_len + 1, sizeof(int32_t))
        self.diff_r = <int32_t *>calloc(chunk_len + 1, sizeof(int32_t))
        self.cap_pending = 1024
        self.pending = <Event *>calloc(self.cap_pending, sizeof(Event))
        self.scratch_cap = 1 << 16
        self.scratch = <uint8_t *>calloc(self.scratch_cap, 1)
        if (self.b == NULL or self.diff_f == NULL or self.diff_r == NULL or self.pending == NULL
                or self.scratch == NULL):
            raise MemoryError()
        self.contig_open = False
        self.held = False
        self.stream_ended = False
        self.skipping = False

    def __dealloc__(self):
        self.close()

    def close(self):
        if self.itr != NULL:
            hts_itr_destroy(self.itr)
            self.itr = NULL
        if self.idx != NULL:
            hts_idx_destroy(self.idx)
            self.idx = NULL
        if self.hdr != NULL:
            sam_hdr_destroy(self.hdr)
            self.hdr = NULL
        if self.fp != NULL:
            hts_close(self.fp)
            self.fp = NULL
        if self.b != NULL:
            bam_destroy1(self.b)
            self.b = NULL
        free(self.diff_f)
        free(self.diff_r)
        free(self.pending)
        free(self.scratch)
        self.diff_f = NULL
        self.diff_r = NULL
        self.pending = NULL
        self.scratch = NULL
        self.block_view = None

    def contig_span(self, int tid):
        """(first, last) BGZF virtual offsets of contig `tid`'s records per the index, or None."""
        cdef hts_itr_t *it
        cdef uint64_t first, last
        cdef int i
        self._check_tid(tid)
        it = sam_itr_queryi(self.idx, tid, 0, HTS_POS_MAX)
        if it == NULL:
            raise OSError(f"htslib could not query contig index {tid}")
        try:
            if it.n_off == 0:
                return None
            first = it.off[0].u
            last = it.off[0].v
            for i in range(it.n_off):
                if it.off[i].u < first:
                    first = it.off[i].u
                if it.off[i].v > last:
                    last = it.off[i].v
            return first, last
        finally:
            hts_itr_destroy(it)

    def contig_name(self, int tid) -> str:
        """The header's name of contig `tid`."""
        self._check_tid(tid)
        return sam_hdr_tid2name(self.hdr, tid).decode()

    cdef _check_tid(self, int tid):
        if self.diff_f == NULL:
            raise ValueError("reader is closed")
        if tid < 0 or tid >= self.n_targets:
            raise ValueError(f"contig index {tid} is not in the header")

    def start_contig(self, int tid, int64_t length, *, bint fed=False):
        """Start contig `tid` (0-based header index).

        fed=False: records come from htslib's index iterator. fed=True: the caller passes the
        contig's decompressed BGZF blocks to feed() whenever next_window returns NEED_DATA, and
        calls finish_data() when there are no more.

        A stream (`fed` is then ignored) continues where it is: the held record must be of
        contig `tid` (next_stream_contig said so), and the contig ends at the first record of
        another one, which is held for the next call.
        """
        self._check_tid(tid)
        if self.stream:
            if not self.held or self.rec_tid != tid:
                raise ValueError("start a stream's contig at its held record (next_stream_contig)")
            self._reset_contig(tid, length)
            return
        if self.itr != NULL:
            hts_itr_destroy(self.itr)
            self.itr = NULL
        if not fed:
            # End HTS_POS_MAX, not the contig length: records that start past the contig end are
            # returned too, so that they are counted in the clipped-read warning.
            self.itr = sam_itr_queryi(self.idx, tid, 0, HTS_POS_MAX)
            if self.itr == NULL:
                raise OSError(f"htslib could not query contig index {tid}")
        self.fed = fed
        self.seen_target = False
        self.block_view = None
        self.blk = NULL
        self.blk_len = 0
        self.blk_pos = 0
        self.scratch_len = 0
        self.scratch_pending = False
        self.end_of_data = False
        self._reset_contig(tid, length)

    cdef _reset_contig(self, int tid, int64_t length):
        """Window state and per-contig results for a new contig; the record source is kept."""
        if self.contig_open:
            # The previous contig was abandoned mid-way (an error, or the fast path giving way
            # to htslib): its open window may have left events in the difference arrays. A
            # contig read to its end leaves them all zero, so this is not done every time.
            memset(self.diff_f, 0, (self.chunk_len + 1) * sizeof(int32_t))
            memset(self.diff_r, 0, (self.chunk_len + 1) * sizeof(int32_t))
        self.target_tid = tid
        self.length = length
        self.w0 = 0
        self.carry_f = 0
        self.carry_r = 0
        self.n_pending = 0
        self.window_open = False
        self.touched = False
        self.have_record = False
        self.exhausted = False
        self.last_pos = -1
        self.sum_total = 0
        self.sum_fwd = 0
        self.sum_rev = 0
        self.nonzero_positions = 0
        self.primary_reads = 0
        self.clipped_reads = 0
        self.improper_pair_records = 0
        self.off_contig_cut_sites = 0
        self.single_end_records = 0
        self.outside_fragment_len = 0
        self.mapq255_reads = 0
        self.seqless_reads = 0
        self.long_cigar_reads = 0
        self.contig_open = True

    def feed(self, const uint8_t[::1] block, Py_ssize_t start=0):
        """Hand in the next decompressed BGZF block (from `start`: the first one's in-block offset)."""
        if not self.fed:
            raise ValueError("feed() is only for contigs started with fed=True")
        if self.blk_pos < self.blk_len:
            raise ValueError("feed() before the previous block was used up")
        if block.shape[0] == 0:
            return
        self.block_view = block
        self.blk = &block[0]
        self.blk_len = block.shape[0]
        self.blk_pos = start if 0 <= start <= self.blk_len else self.blk_len

    def finish_data(self):
        """No more blocks for this contig (for a stream: no more blocks at all)."""
        self.end_of_data = True

    # ------------------------------------------------------------------ streams

    def next_stream_contig(self) -> int:
        """The contig id of the stream's next record (-1: unplaced reads), which is then held;
        STREAM_END once the stream has no more records; NEED_DATA: feed() and call again."""
        cdef int r
        if not self.stream:
            raise ValueError("next_stream_contig() is for streams")
        if self.contig_open or self.skipping:
            raise ValueError("finish the contig first")
        if self.held:
            return self.rec_tid
        if self.stream_ended:
            return STREAM_END_CODE
        with nogil:
            r = self._read_stream_record()
        if r == REC_OK:
            self.held = True
            return self.rec_tid
        if r == REC_END:
            return STREAM_END_CODE
        if r == NEED_DATA_CODE:
            return r
        self._raise(r)

    def skip_stream_contig(self) -> int:
        """Read past the held record and every following one of the same contig, counting the
        mapped ones in `skipped_mapped` and checking their order; 0 when done (the next contig's
        first record is held, or the stream has ended), NEED_DATA: feed() and call again."""
        cdef int r
        if not self.skipping:
            if not self.stream or not self.held or self.contig_open:
                raise ValueError("skip_stream_contig() needs a held record (next_stream_contig)")
            self.skipping = True
            self.held = False
            self.skip_tid = self.rec_tid
            self.target_tid = self.rec_tid
            self.skipped_mapped = (self.rec_flag & FLAG_UNMAPPED) == 0
            self.last_pos = self.rec_pos
        with nogil:
            r = self._skip_records()
        if r == NEED_DATA_CODE:
            return r
        self.skipping = False
        if r != REC_OK:
            self._raise(r)
        return 0

    cdef int _skip_records(self) noexcept nogil:
        cdef int r
        while True:
            r = self._read_stream_record()
            if r == REC_END:
                return REC_OK
            if r != REC_OK:
                return r
            if self.rec_tid != self.skip_tid:
                self.held = True
                return REC_OK
            if self.rec_flag & FLAG_UNMAPPED == 0:
                self.skipped_mapped += 1
            if self.skip_tid >= 0:
                if self.rec_pos < self.last_pos:
                    self.error_prev_pos = self.last_pos
                    self.error_pos = self.rec_pos
                    return ERR_UNSORTED
                self.last_pos = self.rec_pos

    cdef int _read_stream_record(self) noexcept nogil:
        """The stream's next record into rec_*, whatever its contig: REC_OK, REC_END (and
        stream_ended), NEED_DATA or an error."""
        cdef int r
        if self.fed:
            r = self._read_fed_record()
        else:
            r = sam_read1(self.fp, self.hdr, self.b)
            if r >= 0:
                self._load_htslib_record()
                r = REC_OK
            elif r == -1:
                r = REC_END
            else:
                r = ERR_DECODE
        if r == REC_END:
            self.stream_ended = True
        return r

    cdef _raise(self, int r):
        if r == ERR_UNSORTED:
            raise UnsortedInputError(self.target_tid, self.error_prev_pos, self.error_pos)
        if r == ERR_DECODE:
            raise OSError("corrupt BAM record")
        if r == ERR_MEMORY:
            raise MemoryError()
        if r == ERR_BEFORE_WINDOW:
            raise RuntimeError("coverage event before the open window (lookbehind too small)")
        raise RuntimeError(f"kernel status {r}")

    def next_window(self, uint32_t[::1] total, uint32_t[::1] fwd, uint32_t[::1] rev) -> int:
        """Fill the next window that holds any coverage; return its start, or -1 at contig end.

        In fed mode it may also return NEED_DATA: call feed() (or finish_data()) and again.
        All three buffers must hold chunk_len values; positions past the contig end are zeroed.
        fwd and rev are only written in stranded mode. Windows without coverage are skipped
        without touching the buffers (zarr does not store all-fill chunks either).
        """
        cdef int64_t result
        if not self.contig_open:
            raise ValueError("start_contig() first")
        if total.shape[0] < self.chunk_len or (
                self.strand_mode != STRAND_NONE
                and (fwd.shape[0] < self.chunk_len or rev.shape[0] < self.chunk_len)):
            raise ValueError("buffers must hold chunk_len values")
        with nogil:
            result = self._next_window(&total[0],
                                       &fwd[0] if self.strand_mode != STRAND_NONE else NULL,
                                       &rev[0] if self.strand_mode != STRAND_NONE else NULL)
        if result < -1 and result != NEED_DATA_CODE:
            self._raise(<int>result)
        if result == -1:
            self.contig_open = False
            if not self.stream:  # a stream's next contig goes on in the same block
                self.block_view = None
        return result

    # ------------------------------------------------------------------ record sources

    cdef int _next_record(self) noexcept nogil:
        """Load the next record of the contig into rec_*; REC_OK, REC_END, NEED_DATA or error."""
        cdef int r
        if self.stream:
            if self.held:
                self.held = False  # the first record of this contig, read when the last ended
            else:
                r = self._read_stream_record()
                if r != REC_OK:
                    return r
            if self.rec_tid != self.target_tid:
                self.held = True  # the next contig's first record
                return REC_END
        elif self.fed:
            r = self._next_fed_record()
            if r != REC_OK:
                return r
        else:
            r = sam_itr_next(self.fp, self.itr, self.b)
            if r >= 0:
                self._load_htslib_record()
            elif r == -1:
                return REC_END
            else:
                return ERR_DECODE
        if self.rec_pos < self.last_pos:
            self.error_prev_pos = self.last_pos
            self.error_pos = self.rec_pos
            return ERR_UNSORTED
        self.last_pos = self.rec_pos
        return REC_OK

    cdef inline void _load_htslib_record(self) noexcept nogil:
        self.rec_tid = self.b.core.tid
        self.rec_pos = self.b.core.pos
        self.rec_tlen = self.b.core.isize
        self.rec_flag = self.b.core.flag
        self.rec_mapq = self.b.core.qual
        self.rec_n_cigar = self.b.core.n_cigar
        self.rec_l_qseq = self.b.core.l_qseq
        self.rec_cigar = <const uint8_t *>bam_get_cigar(self.b)

    cdef int _next_fed_record(self) noexcept nogil:
        """The next record of target_tid from an indexed file's blocks."""
        cdef int r
        while True:
            r = self._read_fed_record()
            if r != REC_OK:
                return r
            if self.rec_tid == self.target_tid:
                self.seen_target = True
                return REC_OK
            if not self.seen_target and 0 <= self.rec_tid < self.target_tid:
                continue  # before this contig (the index offset is a lower bound)
            # The next contig (in header order or not: samtools indexes files whose contigs
            # are grouped but not in header order), or unplaced reads: this contig is done.
            self.end_of_data = True
            return REC_END

    cdef inline int _read_fed_record(self) noexcept nogil:
        """The next record in the fed blocks, whatever its contig."""
        cdef const uint8_t *rec
        cdef Py_ssize_t avail, size, take, need
        while True:
            if self.scratch_pending:
                # complete a record that straddles blocks
                avail = self.blk_len - self.blk_pos
                if self.scratch_len < 4:
                    take = 4 - self.scratch_len
                    if take > avail:
                        take = avail
                    memcpy(self.scratch + self.scratch_len, self.blk + self.blk_pos, take)
                    self.scratch_len += take
                    self.blk_pos += take
                    avail -= take
                    if self.scratch_len < 4:
                        return self._starved()
                size = load_i32(self.scratch)
                if size < BAM_CORE_SIZE or size > MAX_RECORD_SIZE:
                    return ERR_DECODE
                need = 4 + size
                if need > self.scratch_cap:
                    if self._grow_scratch(need) != 0:
                        return ERR_MEMORY
                take = need - self.scratch_len
                if take > avail:
                    take = avail
                memcpy(self.scratch + self.scratch_len, self.blk + self.blk_pos, take)
                self.scratch_len += take
                self.blk_pos += take
                if self.scratch_len < need:
                    return self._starved()
                self.scratch_pending = False
                rec = self.scratch + 4
            else:
                avail = self.blk_len - self.blk_pos
                if avail == 0:
                    return self._starved()
                if avail < 4:
                    memcpy(self.scratch, self.blk + self.blk_pos, avail)
                    self.scratch_len = avail
                    self.blk_pos = self.blk_len
                    self.scratch_pending = True
                    continue
                size = load_i32(self.blk + self.blk_pos)
                if size < BAM_CORE_SIZE or size > MAX_RECORD_SIZE:
                    return ERR_DECODE
                if avail < 4 + size:
                    if 4 + size > self.scratch_cap:
                        if self._grow_scratch(4 + size) != 0:
                            return ERR_MEMORY
                    memcpy(self.scratch, self.blk + self.blk_pos, avail)
                    self.scratch_len = avail
                    self.blk_pos = self.blk_len
                    self.scratch_pending = True
                    continue
                rec = self.blk + self.blk_pos + 4
                self.blk_pos += 4 + size
            return self._parse_record(rec, size)

    cdef int _starved(self) noexcept nogil:
        if self.end_of_data:
            if self.scratch_pending:
                return ERR_DECODE  # the stream ended inside a record
            return REC_END
        return NEED_DATA_CODE

    cdef int _grow_scratch(self, Py_ssize_t need) noexcept nogil:
        cdef uint8_t *grown = <uint8_t *>realloc(self.scratch, need)
        if grown == NULL:
            return ERR_MEMORY
        self.scratch = grown
        self.scratch_cap = need
        return 0

    cdef int _parse_record(self, const uint8_t *rec, Py_ssize_t size) noexcept nogil:
        """BAM record fields after block_size (SAM spec 4.2); the CG tag replaces a kSmN CIGAR."""
        cdef uint8_t l_read_name = rec[8]
        cdef uint16_t n_cigar = load_u16(rec + 12)
        cdef int32_t l_seq = load_i32(rec + 16)
        cdef Py_ssize_t cigar_at = BAM_CORE_SIZE + l_read_name
        cdef Py_ssize_t aux_at, p, vsize
        cdef uint32_t op0, op1
        if l_seq < 0 or cigar_at + 4 * <Py_ssize_t>n_cigar > size:
            return ERR_DECODE
        self.rec_tid = load_i32(rec)
        self.rec_pos = load_i32(rec + 4)
        self.rec_tlen = load_i32(rec + 28)
        self.rec_mapq = rec[9]
        self.rec_flag = load_u16(rec + 14)
        self.rec_n_cigar = n_cigar
        self.rec_l_qseq = l_seq
        self.rec_cigar = rec + cigar_at
        if n_cigar == 2:
            op0 = load_u32(rec + cigar_at)
            op1 = load_u32(rec + cigar_at + 4)
            if (op0 & 0xF) == 4 and (op0 >> 4) == <uint32_t>l_seq and (op1 & 0xF) == 3:
                aux_at = cigar_at + 8 + (l_seq + 1) // 2 + l_seq
                p = aux_at
                while p + 3 < size:
                    vsize = aux_value_size(rec + p + 2, size - p - 2)
                    if vsize < 0 or p + 2 + vsize > size:
                        return ERR_DECODE
                    if (rec[p] == b'C' and rec[p + 1] == b'G' and rec[p + 2] == b'B'
                            and rec[p + 3] == b'I'):
                        self.rec_n_cigar = load_u32(rec + p + 4)
                        self.rec_cigar = rec + p + 8
                        break
                    p += 2 + vsize
        return REC_OK

    # ------------------------------------------------------------------ coverage

    cdef int _push_event(self, int64_t pos, int32_t delta, bint rev) noexcept nogil:
        cdef Event *grown
        if pos >= self.length:
            return 0  # the end of a block at or past the contig end changes nothing inside it
        if pos < self.w0:
            # Only a wrong `lookbehind` gets here; refuse rather than write before the array.
            return ERR_BEFORE_WINDOW
        if pos < self.w0 + self.chunk_len:
            if rev:
                self.diff_r[pos - self.w0] += delta
            else:
                self.diff_f[pos - self.w0] += delta
            return 0
        if self.n_pending == self.cap_pending:
            grown = <Event *>realloc(self.pending, 2 * self.cap_pending * sizeof(Event))
            if grown == NULL:
                return ERR_MEMORY
            self.pending = grown
            self.cap_pending *= 2
        self.pending[self.n_pending].pos = pos
        self.pending[self.n_pending].delta = delta
        self.pending[self.n_pending].rev = rev
        self.n_pending += 1
        return 0

    cdef int _emit_block(self, int64_t start, int64_t end, bint rev, bint *clipped) noexcept nogil:
        if end > self.length:
            clipped[0] = True
            if start >= self.length:
                return 0
            end = self.length
        cdef int r = self._push_event(start, 1, rev)
        if r != 0:
            return r
        return self._push_event(end, -1, rev)

    cdef int _add_record(self) noexcept nogil:
        """Add the current record's coverage, as the counting mode defines it: 0 (counted),
        REC_NOT_COUNTED (left out by the fragment-length filter) or an error."""
        cdef bint rev = False
        if self.strand_mode != STRAND_NONE:
            rev = not is_sense_strand(self.rec_flag, self.strand_mode)
        if self.mode == MODE_READS:
            return self._add_aligned_blocks(rev)
        if self.fragment_len_filter and not self._in_fragment_len_range():
            return REC_NOT_COUNTED
        if self.mode == MODE_FRAGMENTS:
            return self._add_fragment(rev)
        return self._add_cut_site(rev)

    cdef bint _in_fragment_len_range(self) noexcept nogil:
        """The fragment-length filter: a record of a proper pair (0x1 and 0x2) whose |TLEN| is
        within [min, max] counts; the others are counted by why they do not."""
        cdef int64_t tlen = self.rec_tlen if self.rec_tlen >= 0 else -self.rec_tlen
        if not (self.rec_flag & FLAG_PAIRED):
            self.single_end_records += 1
            return False
        if not (self.rec_flag & FLAG_PROPER_PAIR) or tlen == 0:
            self.improper_pair_records += 1
            return False
        if tlen < self.min_fragment_len or tlen > self.max_fragment_len:
            self.outside_fragment_len += 1
            return False
        return True

    cdef int _add_aligned_blocks(self, bint rev) noexcept nogil:
        """reads: the record's reference blocks (M, =, X; D with count_deletions)."""
        cdef uint32_t i, c, op, oplen
        cdef int64_t ref = self.rec_pos
        cdef int64_t block_start = -1
        cdef int64_t block_end = -1
        cdef bint clipped = False
        cdef bint covers
        cdef int r
        for i in range(self.rec_n_cigar):
            c = load_u32(self.rec_cigar + 4 * i)
            op = c & 0xF
            oplen = c >> 4
            # M=0, D=2, N=3, '='=7, X=8 consume the reference; I, S, H, P do not.
            if op == 0 or op == 7 or op == 8:
                covers = True
            elif op == 2:
                covers = self.count_deletions
            elif op == 3:
                covers = False
            else:
                continue
            if covers and oplen > 0:
                if block_end == ref:
                    block_end = ref + oplen  # adjacent block: extend, fewer events
                else:
                    if block_end > block_start:
                        r = self._emit_block(block_start, block_end, rev, &clipped)
                        if r != 0:
                            return r
                    block_start = ref
                    block_end = ref + oplen
            ref += oplen
        if block_end > block_start:
            r = self._emit_block(block_start, block_end, rev, &clipped)
            if r != 0:
                return r
        if clipped:
            self.clipped_reads += 1
        return 0

    cdef int64_t _reference_end(self) noexcept nogil:
        """End (exclusive) of the alignment on the reference: start + M/D/N/=/X lengths."""
        cdef uint32_t i, c
        cdef int64_t end = self.rec_pos
        for i in range(self.rec_n_cigar):
            c = load_u32(self.rec_cigar + 4 * i)
            if (REF_CONSUMING_OPS >> (c & 0xF)) & 1:
                end += c >> 4
        return end

    cdef int _add_fragment(self, bint rev) noexcept nogil:
        """fragments: a proper pair's insert from its leftmost mate, or a single-end read's span."""
        cdef int64_t start = self.rec_pos
        cdef int64_t end
        cdef bint clipped = False
        if self.rec_flag & FLAG_PAIRED:
            # The pair is counted once, by the mate with TLEN > 0; no CIGAR is read at all.
            if not (self.rec_flag & FLAG_PROPER_PAIR) or self.rec_tlen == 0:
                self.improper_pair_records += 1
                return 0
            if self.rec_tlen < 0:
                return 0  # the right-hand mate of a proper pair: its left mate adds the fragment
            end = start + self.rec_tlen
        else:
            end = self._reference_end()
            if self.extend > 0:
                if self.rec_flag & FLAG_REVERSE:
                    start = end - self.extend
                else:
                    end = start + self.extend
        if start < 0:
            start = 0  # a reverse read extended past the contig's first base
        if end <= start:
            return 0
        cdef int r = self._emit_block(start, end, rev, &clipped)
        if r != 0:
            return r
        if clipped:
            self.clipped_reads += 1
        return 0

    cdef int _add_cut_site(self, bint rev) noexcept nogil:
        """cutsites: +1 at the shifted 5' end; forward reads need no CIGAR walk."""
        cdef int64_t site
        if self.rec_flag & FLAG_REVERSE:
            site = self._reference_end() - 1 + self.shift_rev
        else:
            site = self.rec_pos + self.shift_fwd
        if site < 0 or site >= self.length:
            self.off_contig_cut_sites += 1
            return 0
        cdef int r = self._push_event(site, 1, rev)
        if r != 0:
            return r
        return self._push_event(site + 1, -1, rev)

    cdef bint _passes(self) noexcept nogil:
        return not (self.rec_flag & self.exclude_flags) and self.rec_mapq >= self.min_mapq

    cdef int64_t _next_window(self, uint32_t *total, uint32_t *fwd, uint32_t *rev) noexcept nogil:
        cdef int64_t w_end, width, i, next_pos, result_start
        cdef size_t k, kept
        cdef int r
        cdef int64_t cf, cr
        cdef bint stranded = self.strand_mode != STRAND_NONE
        cdef uint32_t v, vf, vr
        cdef uint64_t s_t, s_f, s_r, nz
        while True:
            if self.w0 >= self.length:
                return -1
            w_end = self.w0 + self.chunk_len
            if w_end > self.length:
                w_end = self.length
            if not self.window_open:
                # 1. events that were waiting for this window
                self.window_open = True
                self.touched = False
                kept = 0
                for k in range(self.n_pending):
                    if self.pending[k].pos < w_end:
                        if self.pending[k].rev:
                            self.diff_r[self.pending[k].pos - self.w0] += self.pending[k].delta
                        else:
                            self.diff_f[self.pending[k].pos - self.w0] += self.pending[k].delta
                        self.touched = True
                    else:
                        self.pending[kept] = self.pending[k]
                        kept += 1
                self.n_pending = kept
            # 2. records that start inside this window (state survives a NEED_DATA return)
            while True:
                if not self.have_record:
                    if self.exhausted:
                        break
                    r = self._next_record()
                    if r == REC_END:
                        self.exhausted = True
                        break
                    if r != REC_OK:
                        return r
                    self.have_record = True
                if self.rec_pos >= self.length:
                    # Starts past the contig end: it covers nothing here, but is counted in the
                    # clipped-read warning like any read that runs past the end (if it would
                    # have counted: the fragment-length filter counts the others itself).
                    self.have_record = False
                    if self._passes() and (self.mode == MODE_READS or not self.fragment_len_filter
                                           or self._in_fragment_len_range()):
                        self.clipped_reads += 1
                    continue
                # A record can add coverage up to `lookbehind` before its start (a cut site
                # shifted left, a reverse read extended to its 5' end): the window is final
                # only once the next record starts that far past its end.
                if self.rec_pos >= w_end + self.lookbehind:
                    break
                self.have_record = False
                if not self._passes():
                    continue
                r = self._add_record()
                if r != 0:
                    if r == REC_NOT_COUNTED:
                        continue
                    return r
                if not (self.rec_flag & FLAG_NOT_PRIMARY):
                    self.primary_reads += 1
                # unusual but valid records, reported as warnings
                if self.rec_mapq == 255:
                    self.mapq255_reads += 1
                if self.rec_l_qseq == 0:
                    self.seqless_reads += 1
                if self.rec_n_cigar > 65535:
                    self.long_cigar_reads += 1
                self.touched = True
            # 3. nothing here: jump straight to the window of the next event
            if not self.touched and self.carry_f == 0 and self.carry_r == 0:
                self.window_open = False
                next_pos = self.length
                if self.have_record:
                    next_pos = self.rec_pos - self.lookbehind
                for k in range(self.n_pending):
                    if self.pending[k].pos < next_pos:
                        next_pos = self.pending[k].pos
                if next_pos >= self.length:
                    self.w0 = self.length
                    return -1
                self.w0 = next_pos - next_pos % self.chunk_len
                if self.w0 < w_end:
                    self.w0 = w_end
                continue
            # 4. running sum over the window
            width = w_end - self.w0
            cf = self.carry_f
            cr = self.carry_r
            s_t = 0
            s_f = 0
            s_r = 0
            nz = 0
            if stranded:
                for i in range(width):
                    cf += self.diff_f[i]
                    cr += self.diff_r[i]
                    self.diff_f[i] = 0
                    self.diff_r[i] = 0
                    vf = <uint32_t>cf
                    vr = <uint32_t>cr
                    fwd[i] = vf
                    rev[i] = vr
                    total[i] = vf + vr
                    s_f += vf
                    s_r += vr
                    nz += (vf + vr) != 0
                for i in range(width, self.chunk_len):
                    fwd[i] = 0
                    rev[i] = 0
                    total[i] = 0
            else:
                for i in range(width):
                    cf += self.diff_f[i]
                    self.diff_f[i] = 0
                    v = <uint32_t>cf
                    total[i] = v
                    s_t += v
                    nz += v != 0
                for i in range(width, self.chunk_len):
                    total[i] = 0
            # an event at w_end (if any) is still pending, so diff[width] stays 0
            self.carry_f = cf
            self.carry_r = cr
            s_t += s_f + s_r
            self.sum_total += s_t
            self.sum_fwd += s_f
            self.sum_rev += s_r
            self.nonzero_positions += nz
            self.window_has_total = s_t != 0
            self.window_has_fwd = s_f != 0
            self.window_has_rev = s_r != 0
            result_start = self.w0
            self.w0 = w_end
            self.window_open = False
            if s_t == 0:
                continue  # a touched window can still be empty (e.g. only D without -J)
            return result_start
