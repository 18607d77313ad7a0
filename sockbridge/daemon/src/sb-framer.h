/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define SB_FRAMER_MAX_DELIMITER 64

/* Called once per frame. @data is only valid during the call. @complete is
 * TRUE when the frame ends with the delimiter, FALSE for a partial frame
 * (flush timeout, max-message-bytes cut, flush on close, end of datagram,
 * or a framer without delimiter). It may run several times in one
 * sb_framer_feed(), in byte order. It must not free the framer, nor feed or
 * flush it: the framer is still walking its input and buffer. */
typedef void (*SbFrameFunc) (const guint8 *data,
                             gsize         len,
                             gboolean      complete,
                             gpointer      user_data);

typedef struct _SbFramer SbFramer;

SbFramer *sb_framer_new            (const guint8 *delimiter,
                                    gsize         delimiter_len,
                                    gsize         max_message,
                                    guint         flush_timeout_ms,
                                    SbFrameFunc   func,
                                    gpointer      user_data);
void      sb_framer_free           (SbFramer     *self);
void      sb_framer_feed           (SbFramer     *self,
                                    const guint8 *data,
                                    gsize         len);
void      sb_framer_flush          (SbFramer     *self);
void      sb_framer_end_datagram   (SbFramer     *self);
gsize     sb_framer_get_pending    (SbFramer     *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbFramer, sb_framer_free)

G_END_DECLS
