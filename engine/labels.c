/* The label table: open addressing keyed by thread ident or tagged Context
 * address (labels.h); a slot whose label is cleared keeps its key so a
 * thread that labels every request reuses it.  When the table fills,
 * cleared slots are dropped. */
#include "labels.h"

#include <pthread.h>
#include <string.h>

#define LABEL_SLOTS 4096u

typedef struct {
    uint64_t ident; /* 0 = empty */
    uint8_t len;
    char text[OXP_LABEL_MAX + 1];
} label_slot_t;

/* Guards label_table and label_used. */
static pthread_mutex_t label_lock = PTHREAD_MUTEX_INITIALIZER;
static label_slot_t label_table[LABEL_SLOTS];
static uint32_t label_used;

static uint32_t slot_of(uint64_t ident)
{
    uint64_t x = ident * 0x9e3779b97f4a7c15ULL;
    return (uint32_t)(x >> 40) & (LABEL_SLOTS - 1);
}

static label_slot_t *find_unlocked(uint64_t ident)
{
    for (uint32_t i = slot_of(ident), n = 0; n < LABEL_SLOTS; i = (i + 1) & (LABEL_SLOTS - 1), n++) {
        if (label_table[i].ident == ident) {
            return &label_table[i];
        }
        if (label_table[i].ident == 0) {
            return NULL;
        }
    }
    return NULL;
}

/* Rebuilds the table without the cleared slots. */
static void compact_unlocked(void)
{
    static label_slot_t keep[LABEL_SLOTS];
    uint32_t n = 0;
    for (uint32_t i = 0; i < LABEL_SLOTS; i++) {
        if (label_table[i].ident != 0 && label_table[i].len != 0) {
            keep[n++] = label_table[i];
        }
    }
    memset(label_table, 0, sizeof(label_table));
    label_used = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = slot_of(keep[k].ident);
        while (label_table[i].ident != 0) {
            i = (i + 1) & (LABEL_SLOTS - 1);
        }
        label_table[i] = keep[k];
        label_used++;
    }
}

int oxp_labels_set(uint64_t ident, const char *label, size_t len)
{
    if (ident == 0) {
        return -1;
    }
    if (len > OXP_LABEL_MAX) {
        len = OXP_LABEL_MAX;
        /* Do not cut a UTF-8 sequence in half. */
        while (len > 0 && ((unsigned char)label[len] & 0xc0) == 0x80) {
            len--;
        }
    }
    int rc = 0;
    pthread_mutex_lock(&label_lock);
    label_slot_t *slot = find_unlocked(ident);
    if (slot == NULL && len > 0) {
        if ((label_used + 1) * 4 > LABEL_SLOTS * 3) {
            compact_unlocked();
        }
        if ((label_used + 1) * 4 > LABEL_SLOTS * 3) {
            rc = -1;
        } else {
            uint32_t i = slot_of(ident);
            while (label_table[i].ident != 0) {
                i = (i + 1) & (LABEL_SLOTS - 1);
            }
            slot = &label_table[i];
            slot->ident = ident;
            label_used++;
        }
    }
    if (slot != NULL) {
        memcpy(slot->text, label, len);
        slot->text[len] = '\0';
        slot->len = (uint8_t)len;
    }
    pthread_mutex_unlock(&label_lock);
    return rc;
}

size_t oxp_labels_get_unlocked(uint64_t ident, char *buf)
{
    if (label_used == 0) {
        return 0;
    }
    const label_slot_t *slot = find_unlocked(ident);
    if (slot == NULL || slot->len == 0) {
        return 0;
    }
    memcpy(buf, slot->text, (size_t)slot->len + 1);
    return slot->len;
}

void oxp_labels_lock(void) { pthread_mutex_lock(&label_lock); }
void oxp_labels_unlock(void) { pthread_mutex_unlock(&label_lock); }

void oxp_labels_after_fork_child(void)
{
    pthread_mutex_init(&label_lock, NULL);
}

size_t oxp_labels_get(uint64_t ident, char *buf)
{
    oxp_labels_lock();
    size_t len = oxp_labels_get_unlocked(ident, buf);
    oxp_labels_unlock();
    return len;
}

size_t oxp_labels_of(uint64_t ident, uintptr_t context, char *buf)
{
    oxp_labels_lock();
    size_t len = context != 0 ? oxp_labels_get_unlocked(oxp_label_key_context(context), buf) : 0;
    if (len == 0) {
        len = oxp_labels_get_unlocked(oxp_label_key_thread(ident), buf);
    }
    oxp_labels_unlock();
    return len;
}
