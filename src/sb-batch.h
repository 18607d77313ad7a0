/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "sb-client.h"

G_BEGIN_DECLS

/* A batch never grows past these before it is taken: a burst on one
 * server cannot hold the others' signals back, and the signal stays well
 * under the bus's message limits. Not smaller: a Python subscriber (Home
 * Assistant) pays per signal, and with 256 frames a burst of small frames
 * took eight times as many (bench/run, section 7). */
#define SB_BATCH_MAX_FRAMES 4096
#define SB_BATCH_MAX_BYTES  (256 * 1024)

/* A batch leaves no sooner than this after the server's previous one.
 * Frames that trickle in faster than a subscriber takes signals (one
 * signal each otherwise) then share signals, and a frame after a quiet
 * moment still leaves at once. */
#define SB_BATCH_MIN_INTERVAL_US 500

/* The frames of one server that leave together as one ServerDataInBatch
 * signal, in the order they were added. */
typedef struct _SbBatch SbBatch;

SbBatch  *sb_batch_new      (void);
void      sb_batch_free     (SbBatch      *self);
/* TRUE when the batch is full: take it before adding more. */
gboolean  sb_batch_add      (SbBatch      *self,
                             SbClient     *client,
                             const guint8 *data,
                             gsize         len);
gboolean  sb_batch_is_empty (SbBatch      *self);
/* About what the signal's body will weigh on the bus. */
gsize     sb_batch_get_size (SbBatch      *self);
/* The monotonic time (µs) from which the batch may leave:
 * SB_BATCH_MIN_INTERVAL_US after it was last taken. */
gint64    sb_batch_get_due  (SbBatch      *self);
/* ServerDataInBatch's parameters, (a(uaysq)s), floating; empties the batch. */
GVariant *sb_batch_take     (SbBatch      *self,
                             GVariant     *identifier);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbBatch, sb_batch_free)

G_END_DECLS
