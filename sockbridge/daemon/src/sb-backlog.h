/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* GDBus queues outgoing messages without limit. SbBacklog measures how
 * many bytes of signals were emitted but not yet written to the bus, by
 * flushing the connection every SB_BACKLOG_STEP bytes and counting what
 * each completed flush confirms, and reports congestion past a high
 * water mark until the backlog drains below a low one. */
#define SB_BACKLOG_STEP (256 * 1024)
#define SB_BACKLOG_HIGH (16 * 1024 * 1024)
#define SB_BACKLOG_LOW  (4 * 1024 * 1024)

typedef void (*SbBacklogFunc) (gboolean congested,
                               gpointer user_data);

#define SB_TYPE_BACKLOG (sb_backlog_get_type ())
G_DECLARE_FINAL_TYPE (SbBacklog, sb_backlog, SB, BACKLOG, GObject)

SbBacklog *sb_backlog_new           (GDBusConnection *connection,
                                     SbBacklogFunc    func,
                                     gpointer         user_data);
void       sb_backlog_add           (SbBacklog       *self,
                                     gsize            bytes);
gboolean   sb_backlog_is_congested  (SbBacklog       *self);
guint64    sb_backlog_get_pending   (SbBacklog       *self);
guint64    sb_backlog_get_stalls    (SbBacklog       *self);

G_END_DECLS
