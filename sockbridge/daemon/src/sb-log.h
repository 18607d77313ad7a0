/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* At most this many characters of a frame are shown in the debug log:
 * enough to recognise a message, too few to copy user data into the
 * journal wholesale. */
#define SB_LOG_FRAME_SHOWN 64

/* TRUE when debug messages of the daemon's log domain are shown
 * (--verbose, G_MESSAGES_DEBUG). Asked once by whoever logs per frame,
 * so that a quiet daemon pays one test per frame and no formatting. */
gboolean  sb_log_debug_enabled (void);

/* Logs one frame at debug level: its handle, direction ("in", "out"),
 * length and first bytes, quoted with \r, \n, \t, \\, \" and \xNN
 * escapes: at most SB_LOG_FRAME_SHOWN characters between the quotes, then
 * "..." when there was more. */
void      sb_log_frame         (guint32       handle,
                                const char   *direction,
                                const guint8 *data,
                                gsize         len);

/* The same for a datagram of ServerSendTo(), which has no handle: it is
 * named by its server's port and its destination. */
void      sb_log_datagram      (guint16       port,
                                const char   *destination,
                                const guint8 *data,
                                gsize         len);

G_END_DECLS
