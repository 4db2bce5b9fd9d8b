/* CPython 3.11+ location table ("co_linetable") decoding, without the
 * interpreter: usable from a thread that does not hold the GIL. */
#ifndef OXP_LINETABLE_H
#define OXP_LINETABLE_H

#include <stddef.h>
#include <stdint.h>

/* The line of code unit `lasti` (an instruction index, not a byte offset);
 * -1 when the table says the instruction has no line, firstlineno when the
 * table ends before it. */
int32_t oxp_linetable_line(const uint8_t *table, size_t len, int32_t firstlineno, int32_t lasti);

#endif
