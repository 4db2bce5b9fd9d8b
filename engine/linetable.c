/* Decodes the 3.11 location table (Objects/locations.md in CPython): entries
 * start with a byte whose bit 7 is set, holding a 4-bit code and the entry's
 * length minus one in code units.  Varints are 6-bit chunks, least
 * significant first, with 0x40 meaning "more". */
#include "linetable.h"

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} reader_t;

static uint32_t read_varint(reader_t *r)
{
    uint32_t value = 0;
    unsigned shift = 0;
    while (r->p < r->end && shift < 32) {
        uint8_t b = *r->p++;
        value |= (uint32_t)(b & 0x3f) << shift;
        shift += 6;
        if (!(b & 0x40)) {
            break;
        }
    }
    return value;
}

static int32_t read_signed_varint(reader_t *r)
{
    uint32_t u = read_varint(r);
    return (u & 1) ? -(int32_t)(u >> 1) : (int32_t)(u >> 1);
}

int32_t oxp_linetable_line(const uint8_t *table, size_t len, int32_t firstlineno, int32_t lasti)
{
    reader_t r = {table, table + len};
    int32_t line = firstlineno;
    int32_t addr = 0; /* in code units */
    while (r.p < r.end) {
        uint8_t first = *r.p++;
        if (!(first & 0x80)) {
            break; /* not at an entry start: corrupt */
        }
        int code = (first >> 3) & 0x0f;
        int32_t length = (first & 0x07) + 1;
        int32_t entry_line;
        switch (code) {
        case 15: /* no location */
            entry_line = -1;
            break;
        case 14: /* long form: line delta, end line delta, two columns */
            line += read_signed_varint(&r);
            entry_line = line;
            (void)read_varint(&r);
            (void)read_varint(&r);
            (void)read_varint(&r);
            break;
        case 13: /* no column */
            line += read_signed_varint(&r);
            entry_line = line;
            break;
        case 10:
        case 11:
        case 12: /* one-line form */
            line += code - 10;
            entry_line = line;
            if (r.p + 2 > r.end) {
                return firstlineno;
            }
            r.p += 2;
            break;
        default: /* short form, same line, one column byte */
            entry_line = line;
            if (r.p + 1 > r.end) {
                return firstlineno;
            }
            r.p += 1;
            break;
        }
        if (lasti < addr + length) {
            return entry_line;
        }
        addr += length;
    }
    return firstlineno;
}
