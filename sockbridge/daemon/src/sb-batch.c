/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-batch.h"

/* What one frame adds to a batch beside its data: handle, lengths, port,
 * the address and the padding between them. */
#define SB_BATCH_FRAME_OVERHEAD 48

struct _SbBatch
{
  GPtrArray *frames;   /* (uaysq) GVariant*, owned */
  gsize      bytes;    /* data only */
  gint64     taken_us; /* monotonic time of the last take; 0 = never */
};

SbBatch *
sb_batch_new (void)
{
  SbBatch *self = g_new0 (SbBatch, 1);

  self->frames = g_ptr_array_new_full (SB_BATCH_MAX_FRAMES, (GDestroyNotify) g_variant_unref);
  return self;
}

void
sb_batch_free (SbBatch *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->frames);
  g_free (self);
}

gboolean
sb_batch_add (SbBatch      *self,
              SbClient     *client,
              const guint8 *data,
              gsize         len)
{
  GVariant *fields[4];

  sb_client_frame_fields (client, data, len, fields);
  g_ptr_array_add (self->frames,
                   g_variant_ref_sink (g_variant_new_tuple (fields, G_N_ELEMENTS (fields))));
  self->bytes += len;
  return self->frames->len >= SB_BATCH_MAX_FRAMES || self->bytes >= SB_BATCH_MAX_BYTES;
}

gboolean
sb_batch_is_empty (SbBatch *self)
{
  return self->frames->len == 0;
}

gsize
sb_batch_get_size (SbBatch *self)
{
  return self->bytes + self->frames->len * SB_BATCH_FRAME_OVERHEAD;
}

gint64
sb_batch_get_due (SbBatch *self)
{
  g_return_val_if_fail (self != NULL, 0);

  return self->taken_us + SB_BATCH_MIN_INTERVAL_US;
}

GVariant *
sb_batch_take (SbBatch  *self,
               GVariant *identifier)
{
  GVariant *fields[2];

  g_return_val_if_fail (!sb_batch_is_empty (self), NULL);

  fields[0] = g_variant_new_array (G_VARIANT_TYPE ("(uaysq)"),
                                   (GVariant **) self->frames->pdata, self->frames->len);
  fields[1] = identifier;
  g_ptr_array_set_size (self->frames, 0);
  self->bytes = 0;
  self->taken_us = g_get_monotonic_time ();
  return g_variant_new_tuple (fields, G_N_ELEMENTS (fields));
}
